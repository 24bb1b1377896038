"""A stand-in for the provider's clock, waits and jitter: sleeping only moves the time on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cloudtuner.providers.replicate import Timing

START = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


class FakeTime:
    """Monotonic and wall time that move only when something sleeps; every sleep is recorded."""

    def __init__(self, jitter: float = 0.5, start: datetime = START) -> None:
        self.monotonic_now = 1000.0
        self.wall = start
        self.jitter_value = jitter
        self.sleeps: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        self.monotonic_now += seconds
        self.wall += timedelta(seconds=seconds)

    def monotonic(self) -> float:
        return self.monotonic_now

    def now(self) -> datetime:
        return self.wall

    def jitter(self) -> float:
        return self.jitter_value

    @property
    def timing(self) -> Timing:
        return Timing(sleep=self.sleep, monotonic=self.monotonic, now=self.now, jitter=self.jitter)
