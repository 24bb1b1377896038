"""When Replicate calls are repeated, how long they may take, and when create calls are held back.

Contracts:

* :class:`RetryPolicy` bounds the retries of one call (tries and a total time budget). The wait
  before a retry is ``Retry-After`` when the reply has one (seconds or an HTTP date, plus a little
  jitter), else an exponential backoff with jitter; a wait that would overrun the budget is not
  taken. :data:`RETRY_STATUSES` are the replies worth retrying.
* :class:`CreateGate` holds every create call of one provider back after a 429 on one, for the
  time Replicate asked (capped by :class:`CreateThrottle`; without the header, a growing backoff).
* :class:`Timeouts` are the seconds allowed for each phase of a call.
* Time, waits and jitter come from :class:`Timing`, so tests never sleep.

Nothing here sends a request: :mod:`.client` applies these policies.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx

from cloudtuner.core.clock import utcnow

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
"""Replies to a retryable call that are worth sending it again for."""


@dataclass(frozen=True)
class Timing:
    """Where the HTTP layer gets time, waits and randomness: the seam tests replace.

    ``monotonic`` measures budgets and gates, ``now`` (aware UTC) reads ``Retry-After`` dates,
    ``sleep`` waits, and ``jitter`` returns a number in ``[0, 1)``.
    """

    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    monotonic: Callable[[], float] = time.monotonic
    now: Callable[[], datetime] = utcnow
    jitter: Callable[[], float] = random.random


@dataclass(frozen=True)
class RetryPolicy:
    """How retryable calls are repeated: at most ``attempts`` tries within ``budget_seconds``.

    The wait before try ``n + 1`` is ``Retry-After`` when the reply has one (plus up to
    ``retry_after_jitter`` of it, so that clients told the same time do not return together), else
    half of ``min(max_delay, base_delay * 2**n)`` plus a random part up to the other half. A wait
    that would end after the budget is not taken: the call fails instead.
    """

    attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 4.0
    budget_seconds: float = 10.0
    retry_after_jitter: float = 0.1

    def backoff(self, retry_number: int, jitter: float | None = None) -> float:
        """Return the wait before retry ``retry_number`` (0 for the first retry) without a hint.

        ``jitter`` in ``[0, 1)`` picks the point in the upper half of the ceiling (default: random).
        """
        if jitter is None:
            jitter = random.random()  # noqa: S311 - jitter, not a secret
        ceiling = min(self.max_delay, self.base_delay * (2.0 ** min(retry_number, 62)))
        return ceiling / 2 + (ceiling / 2) * _unit(jitter)

    def wait(self, retry_number: int, hint: float | None, jitter: float) -> float:
        """Return the wait before retry ``retry_number``: ``Retry-After`` (``hint``) if given, else backoff."""
        if hint is not None:
            return hint * (1.0 + self.retry_after_jitter * _unit(jitter))
        return self.backoff(retry_number, jitter)


@dataclass(frozen=True)
class CreateThrottle:
    """How long create calls wait after Replicate rate-limited one (HTTP 429: nothing was created).

    ``Retry-After`` is honoured up to ``max_wait_seconds``; without it the wait grows with each
    429 in a row (``base_delay * 2**n`` with jitter, at most ``max_delay``).
    """

    max_wait_seconds: float = 60.0
    base_delay: float = 1.0
    max_delay: float = 30.0
    retry_after_jitter: float = 0.1

    def delay(self, strikes: int, hint: float | None, jitter: float) -> float:
        """Return the wait after the ``strikes``-th 429 in a row (1 for the first)."""
        policy = RetryPolicy(
            base_delay=self.base_delay, max_delay=self.max_delay, retry_after_jitter=self.retry_after_jitter
        )
        return min(self.max_wait_seconds, policy.wait(max(0, strikes - 1), hint, jitter))


@dataclass
class CreateGate:
    """Holds create calls back after a 429, for the time Replicate asked (capped); see :class:`CreateThrottle`.

    Shared by every create call of one provider: Replicate's rate limit is per account, so a
    ``Retry-After`` applies to the next create of any job.
    """

    throttle: CreateThrottle = field(default_factory=CreateThrottle)
    timing: Timing = field(default_factory=Timing)
    strikes: int = 0
    closed_until: float = 0.0

    def remaining(self) -> float:
        """Return the seconds until create calls may be sent again (0: now)."""
        return max(0.0, self.closed_until - self.timing.monotonic())

    async def wait(self) -> float:
        """Wait until create calls may be sent again; return the seconds waited."""
        remaining = self.remaining()
        if remaining > 0:
            log.info("Replicate rate-limited a create call; waiting %.2f s before the next one", remaining)
            await self.timing.sleep(remaining)
        return remaining

    def refused(self, hint: float | None) -> float:
        """Record a 429 on a create call (``hint``: its ``Retry-After``); return the wait it imposes."""
        self.strikes += 1
        delay = self.throttle.delay(self.strikes, hint, self.timing.jitter())
        self.closed_until = max(self.closed_until, self.timing.monotonic() + delay)
        return delay

    def accepted(self) -> None:
        """Record a create call that got through."""
        self.strikes = 0


def _unit(value: float) -> float:
    return min(1.0, max(0.0, value))


@dataclass(frozen=True)
class Timeouts:
    """Seconds allowed for connecting, reading a reply, writing a chunk, and waiting for a pooled connection."""

    connect: float = 5.0
    read: float = 30.0
    write: float = 60.0
    pool: float = 10.0

    def as_httpx(self) -> httpx.Timeout:
        """Return these timeouts for httpx."""
        return httpx.Timeout(connect=self.connect, read=self.read, write=self.write, pool=self.pool)


def retry_after_seconds(value: str | None, *, now: datetime | None = None) -> float | None:
    """Return the wait a ``Retry-After`` header asks for (seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return seconds if 0 <= seconds < float("inf") else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
