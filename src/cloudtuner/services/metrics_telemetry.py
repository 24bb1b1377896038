"""In-process counters for the Prometheus exposition: provider calls (latency, errors) and webhooks.

Figures kept in the job store (jobs by state, spend, queue depth) are read from it at scrape time
(``services.metrics_exposition``); what only this process sees is counted here, per process, as
Prometheus expects of a target (each server process is scraped on its own). Counting is a few
dictionary updates, cheap enough for the scheduler's hot path.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import TypeVar

from cloudtuner.core.errors import CloudtunerError
from cloudtuner.db.engine import Database
from cloudtuner.services.context import ServiceContext

T = TypeVar("T")

LATENCY_BUCKETS: tuple[float, ...] = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
"""Upper bounds (seconds) of the provider call latency histogram; +Inf is implied."""


@dataclass
class Histogram:
    """Cumulative-bucket histogram of one series."""

    counts: list[int] = field(default_factory=lambda: [0] * len(LATENCY_BUCKETS))
    total: int = 0
    sum: float = 0.0

    def observe(self, value: float) -> None:
        """Count one observation."""
        self.total += 1
        self.sum += value
        for index, bound in enumerate(LATENCY_BUCKETS):
            if value <= bound:
                self.counts[index] += 1


@dataclass
class Telemetry:
    """This process's counters (see the module docstring)."""

    provider_latency: dict[tuple[str, str], Histogram] = field(default_factory=dict)
    provider_errors: dict[tuple[str, str, str], int] = field(default_factory=dict)
    webhooks: dict[tuple[str, str], int] = field(default_factory=dict)
    started_at: float = field(default_factory=time.time)

    def observe_call(self, provider: str, method: str, seconds: float, error: str | None) -> None:
        """Record one provider call: its duration, and its error code if it failed."""
        key = (provider, method)
        histogram = self.provider_latency.get(key)
        if histogram is None:
            histogram = self.provider_latency[key] = Histogram()
        histogram.observe(seconds)
        if error is not None:
            error_key = (provider, method, error)
            self.provider_errors[error_key] = self.provider_errors.get(error_key, 0) + 1

    def count_webhook(self, provider: str, outcome: str) -> None:
        """Record one webhook delivery by outcome (accepted, duplicate, or an error code)."""
        key = (provider, outcome)
        self.webhooks[key] = self.webhooks.get(key, 0) + 1


_TELEMETRY: weakref.WeakKeyDictionary[Database, Telemetry] = weakref.WeakKeyDictionary()


def telemetry(ctx: ServiceContext) -> Telemetry:
    """Return this process's counters for ``ctx``'s server (one set per app)."""
    found = _TELEMETRY.get(ctx.db)
    if found is None:
        found = _TELEMETRY[ctx.db] = Telemetry()
    return found


async def timed(ctx: ServiceContext, provider: str, method: str, call: Awaitable[T]) -> T:
    """Await a provider call and record its latency and outcome; return its result or raise its error."""
    start = time.perf_counter()
    try:
        result = await call
    except Exception as exc:
        code = exc.code if isinstance(exc, CloudtunerError) else type(exc).__name__
        telemetry(ctx).observe_call(provider, method, time.perf_counter() - start, code)
        raise
    telemetry(ctx).observe_call(provider, method, time.perf_counter() - start, None)
    return result


def count_webhook(ctx: ServiceContext, provider: str, outcome: str) -> None:
    """Record one webhook delivery's outcome."""
    telemetry(ctx).count_webhook(provider, outcome)
