"""Polling with a deadline: the only way tests wait."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def wait_until(
    probe: Callable[[], Awaitable[T]], accept: Callable[[T], bool], *, timeout: float = 15.0, interval: float = 0.02
) -> T:
    """Call ``probe`` until ``accept`` holds for its result; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if accept(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s; last value: {value!r}")
        await asyncio.sleep(interval)


def wait_until_sync(
    probe: Callable[[], T], accept: Callable[[T], bool], *, timeout: float = 30.0, interval: float = 0.05
) -> T:
    """Blocking twin of :func:`wait_until`, for tests that drive subprocesses."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if accept(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s; last value: {value!r}")
        time.sleep(interval)
