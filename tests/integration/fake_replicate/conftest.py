"""Fixtures for the fake Replicate's own tests: one fake per session, reset before each test."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.fakes.replicate import FakeConfig, FakeReplicate

from .receiver import Receiver

FAST = FakeConfig(
    starting_seconds=0.05,
    processing_seconds=0.3,
    log_steps=5,
    webhook_retry_delays=(0.05, 0.1, 0.1),
    webhook_timeout_seconds=2.0,
    tick_seconds=0.01,
)
"""Short timings so that a whole run takes well under a second."""


@pytest.fixture(scope="session")
def fake_server() -> Iterator[FakeReplicate]:
    with FakeReplicate(FAST) as fake:
        yield fake


@pytest.fixture
def fake(fake_server: FakeReplicate) -> FakeReplicate:
    """The session's fake, reset to FAST with the seeded catalog and nothing else."""
    fake_server.reset()
    return fake_server


@pytest.fixture
def api(fake: FakeReplicate) -> Iterator[httpx.Client]:
    """An authenticated client for the fake's ``/v1`` API."""
    headers = {"Authorization": f"Bearer {fake.token}"}
    with httpx.Client(base_url=fake.base_url + "/", headers=headers, trust_env=False, timeout=10) as client:
        yield client


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A webhook receiver on 127.0.0.1."""
    server = Receiver().start()
    yield server
    server.stop()
