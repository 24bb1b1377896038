"""Failed sign-ins, counted per account and per client address, in the database.

Each key (``user:<name>``, ``ip:<address>``) counts failures within a window of
``login_lockout_minutes``. An attempt is counted *before* its password is checked
(:func:`begin_attempt`, one transaction with the keys' rows locked), so many attempts sent at
once cannot slip past the limit while their passwords are being checked; it is taken back if the
password was right (:func:`attempt_succeeded`). When an account reaches ``login_max_failures``
(an address ``login_max_failures_per_address``) it is locked for the window's length: attempts
are then refused with 429 before any password is checked. A successful sign-in clears its
account's count. Counting unknown usernames too means the replies do not tell which accounts
exist. Counts live in the job store, so every server process sees the same ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from cloudtuner.core.errors import LoginThrottledError
from cloudtuner.db.tables import Base, LoginThrottleRow

if TYPE_CHECKING:
    from cloudtuner.services.context import ServiceContext

THROTTLE = Base.metadata.tables["login_throttle"]


def address_key(address: str) -> str:
    """Return the throttle key of a client address."""
    return f"ip:{address or 'unknown'}"[:128]


def _refusal(until: datetime, now: datetime) -> LoginThrottledError:
    seconds = max(1.0, (until - now).total_seconds())
    minutes = int(seconds // 60) + 1
    return LoginThrottledError(
        f"Too many failed sign-ins: try again in {minutes} minute{'s' if minutes != 1 else ''}, "
        "or ask an admin to unlock the account.",
        retry_after_seconds=round(seconds),
    )


async def _locked_rows(session: AsyncSession, keys: Sequence[str]) -> list[LoginThrottleRow]:
    """Return the existing rows of ``keys``, locked in key order (so that two attempts cannot deadlock)."""
    rows = (
        await session.scalars(
            select(LoginThrottleRow)
            .where(LoginThrottleRow.key.in_(list(keys)))
            .order_by(LoginThrottleRow.key)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).all()
    return list(rows)


async def begin_attempt(ctx: ServiceContext, limits: dict[str, int]) -> None:
    """Count a sign-in attempt against each key of ``limits`` (key -> failures that lock it).

    Raises:
        LoginThrottledError: a key is locked, or already has as many attempts as its limit;
            ``retry_after_seconds`` says how long to wait. Nothing is counted then.
    """
    now = ctx.clock.now()
    window = timedelta(minutes=ctx.settings.login_lockout_minutes)
    refusal: LoginThrottledError | None = None
    async with ctx.db.transaction() as session:
        # Both dialects' INSERTs have on_conflict_do_nothing; the declared return type does not.
        statement: Any = ctx.db.dialect.insert(THROTTLE)
        await session.execute(
            statement.on_conflict_do_nothing(),
            [{"key": key, "failures": 0, "window_started_at": now, "locked_until": None} for key in sorted(limits)],
        )
        rows = await _locked_rows(session, list(limits))
        for row in rows:
            if row.locked_until is not None and row.locked_until > now:
                refusal = _refusal(row.locked_until, now)
                break
            if now - row.window_started_at >= window:
                row.failures, row.window_started_at, row.locked_until = 0, now, None
            if row.failures >= limits[row.key]:  # attempts still being checked fill the allowance
                row.locked_until = now + window
                row.failures, row.window_started_at = 0, now
                refusal = _refusal(row.locked_until, now)
                break
        else:
            for row in rows:
                row.failures += 1
    if refusal is not None:
        raise refusal


async def attempt_failed(ctx: ServiceContext, limits: dict[str, int]) -> LoginThrottledError | None:
    """Settle a failed attempt: lock the keys it brought to their limit.

    Returns the error to raise if this failure locked a key, else None.
    """
    now = ctx.clock.now()
    window = timedelta(minutes=ctx.settings.login_lockout_minutes)
    refusal: LoginThrottledError | None = None
    async with ctx.db.transaction() as session:
        for row in await _locked_rows(session, list(limits)):
            if row.failures >= limits[row.key] and (row.locked_until is None or row.locked_until <= now):
                row.locked_until = now + window
                row.failures, row.window_started_at = 0, now
                refusal = _refusal(row.locked_until, now)
    return refusal


async def attempt_succeeded(ctx: ServiceContext, account_key: str | None, address: str) -> None:
    """Settle a successful attempt: forget the account's failures, take the attempt back from the address."""
    async with ctx.db.transaction() as session:
        if account_key is not None:
            await session.execute(delete(LoginThrottleRow).where(LoginThrottleRow.key == account_key))
        for row in await _locked_rows(session, [address]):
            row.failures = max(0, row.failures - 1)


async def purge_stale(ctx: ServiceContext) -> int:
    """Delete counts whose window and lock have both passed; return how many."""
    now = ctx.clock.now()
    window = timedelta(minutes=ctx.settings.login_lockout_minutes)
    async with ctx.db.transaction() as session:
        result = await session.execute(
            delete(LoginThrottleRow).where(
                LoginThrottleRow.window_started_at < now - window,
                or_(LoginThrottleRow.locked_until.is_(None), LoginThrottleRow.locked_until < now),
            )
        )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
