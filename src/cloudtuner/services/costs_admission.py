"""Spending limits at the moment of submission: check, reserve and insert in one transaction.

A submission that falls under an enabled spending limit carries a :class:`Reservation`: the upper
end of its cost estimate and the limits (scopes, with their current calendar period) it counts
against. :func:`admit` runs inside the transaction that inserts the jobs (the group commit of
``services.job_inserts``, or the transaction of a submission with an idempotency key):

1. it locks the row of each scope in ``spending_scopes`` (``SELECT ... FOR UPDATE`` on PostgreSQL,
   in scope order so that two transactions cannot deadlock; SQLite's write transaction already
   excludes every other writer), creating rows it does not find;
2. it sums each scope's period: the cost of every job submitted in the period, plus what unfinished
   jobs still reserve beyond their cost so far (``services.costs.committed``);
3. it takes the submissions in order: one that would take a ``block`` limit past its amount is
   refused (:class:`~cloudtuner.core.errors.SpendingLimitExceededError`, not inserted); every
   other adds its estimate to the scopes' sums before the next is checked, and collects a warning
   for a ``warn`` limit it goes past or any limit it takes to :data:`WARN_AT_FRACTION` or more.

The caller inserts the admitted jobs, with ``cost_reserved_usd`` = their estimate, before the
transaction commits, so the next transaction to lock the scope sees them: however many
submissions race, in one process or several, together they cannot exceed a ``block`` limit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Select, and_, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from cloudtuner.core.errors import SpendingLimitExceededError
from cloudtuner.core.states import TERMINAL_STATES
from cloudtuner.db.engine import Database
from cloudtuner.db.tables import JobRow, SpendingScopeRow
from cloudtuner.schemas.costs import CostLimit, LimitAction
from cloudtuner.services.costs import format_usd
from cloudtuner.services.costs_periods import PeriodWindow

GLOBAL_SCOPE = "global"
WARN_AT_FRACTION = 0.8
"""A submission that takes any limit to this share of its amount or more gets a warning."""
_EPSILON = 1e-9
_TERMINAL = [status.value for status in TERMINAL_STATES]


def provider_scope_key(provider: str) -> str:
    """Return the scope key of one provider's jobs."""
    return f"provider:{provider}"


@dataclass(frozen=True)
class LimitScope:
    """One enabled spending limit, in the calendar period that applies now."""

    key: str
    provider: str | None
    limit: CostLimit
    window: PeriodWindow

    @property
    def label(self) -> str:
        """Return how messages name this limit ("the daily spending limit on replicate jobs")."""
        where = f"on {self.provider} jobs" if self.provider else "over all providers"
        return f"the {self.limit.period.value} spending limit {where}"


@dataclass(frozen=True)
class Reservation:
    """What a submission reserves, and against which limits."""

    amount_usd: float
    scopes: tuple[LimitScope, ...]
    priced: bool = True
    """False when the job's hardware has no known price: nothing is reserved for it."""


@dataclass
class Admission:
    """The outcome of one submission's check: refused (with why), or accepted with warnings."""

    refusal: SpendingLimitExceededError | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass
class Usage:
    """What a scope's current period holds: costs so far, and what unfinished jobs still reserve."""

    spent_usd: float = 0.0
    reserved_usd: float = 0.0

    @property
    def committed_usd(self) -> float:
        """Return spent plus reserved."""
        return self.spent_usd + self.reserved_usd


def usage_query(provider: str | None, start: datetime, end: datetime) -> Select[Any]:
    """Return the SELECT of (spent, reserved) over the jobs submitted in ``[start, end)``.

    ``provider`` restricts it to one provider's jobs. Served by ``ix_jobs_created_at``.
    """
    conditions: list[ColumnElement[bool]] = [JobRow.created_at >= start, JobRow.created_at < end]
    if provider is not None:
        conditions.append(JobRow.provider == provider)
    held = case(
        (
            and_(JobRow.status.not_in(_TERMINAL), JobRow.cost_reserved_usd > JobRow.cost_usd),
            JobRow.cost_reserved_usd - JobRow.cost_usd,
        ),
        else_=0.0,
    )
    return select(func.coalesce(func.sum(JobRow.cost_usd), 0.0), func.coalesce(func.sum(held), 0.0)).where(*conditions)


async def read_usage(session: AsyncSession, provider: str | None, window: PeriodWindow) -> Usage:
    """Return the usage of one scope's period, read in ``session``."""
    row = (await session.execute(usage_query(provider, window.start, window.end))).one()
    spent, reserved = row[0], row[1]
    return Usage(spent_usd=float(spent or 0.0), reserved_usd=float(reserved or 0.0))


async def _lock_scopes(db: Database, session: AsyncSession, keys: list[str], now: datetime) -> None:
    query = (
        select(SpendingScopeRow.scope)
        .where(SpendingScopeRow.scope.in_(keys))
        .order_by(SpendingScopeRow.scope)
        .with_for_update()
    )
    found = set((await session.scalars(query)).all())
    missing = [key for key in keys if key not in found]
    if not missing:
        return
    statement = db.dialect.insert(SpendingScopeRow.__table__)  # type: ignore[arg-type]
    await session.execute(
        statement.on_conflict_do_nothing(),  # type: ignore[attr-defined]
        [{"scope": key, "created_at": now} for key in missing],
    )
    await session.scalars(query)


def _money(value: float) -> str:
    return format_usd(value)


def _refusal(scope: LimitScope, usage: Usage, amount: float) -> SpendingLimitExceededError:
    limit, window = scope.limit, scope.window
    local_reset = window.end.astimezone(ZoneInfo(window.time_zone))
    what = f"this job's estimate is up to {_money(amount)}" if amount > 0 else "the limit is used up"
    message = (
        f"This job would go over {scope.label}: {_money(usage.committed_usd)} of {_money(limit.amount)} is "
        f"spent or reserved this period ({_money(usage.spent_usd)} spent, {_money(usage.reserved_usd)} reserved "
        f"for unfinished jobs) and {what}. The period resets at {local_reset:%Y-%m-%d %H:%M} {window.time_zone} "
        f"({window.end.isoformat()}). Wait for it, raise the limit, or cancel queued jobs."
    )
    return SpendingLimitExceededError(
        message,
        scope="provider" if scope.provider else "global",
        provider=scope.provider,
        period=limit.period.value,
        action=limit.action.value,
        limit_usd=limit.amount,
        spent_usd=round(usage.spent_usd, 4),
        reserved_usd=round(usage.reserved_usd, 4),
        estimate_usd=round(amount, 4),
        period_start=window.start.isoformat(),
        resets_at=window.end.isoformat(),
        time_zone=window.time_zone,
    )


def _warning(scope: LimitScope, usage: Usage, amount: float) -> str | None:
    limit = scope.limit
    after = usage.committed_usd + amount
    percent = 100 * after / limit.amount
    if after > limit.amount + _EPSILON:
        return (
            f"This job takes {scope.label} over its amount: {_money(after)} of {_money(limit.amount)} "
            f"({percent:.0f} %) is spent or reserved this period, counting this job's estimate of up to "
            f"{_money(amount)}. The limit's action is warn, so the job was accepted."
        )
    if after >= WARN_AT_FRACTION * limit.amount:
        return (
            f"{scope.label[0].upper()}{scope.label[1:]} is {percent:.0f} % used ({_money(after)} of "
            f"{_money(limit.amount)}, counting this job's estimate of up to {_money(amount)})."
        )
    return None


async def admit(
    db: Database, session: AsyncSession, reservations: Sequence[Reservation], now: datetime
) -> list[Admission]:
    """Check ``reservations`` in order against their limits inside the inserting transaction.

    Returns one :class:`Admission` per reservation. The caller must insert exactly the admitted
    jobs in this same transaction (see the module docstring).
    """
    scopes: dict[tuple[str, datetime], LimitScope] = {}
    for reservation in reservations:
        for scope in reservation.scopes:
            scopes.setdefault((scope.key, scope.window.start), scope)
    if not scopes:
        return [Admission() for _ in reservations]
    await _lock_scopes(db, session, sorted({key for key, _ in scopes}), now)
    usage = {key: await read_usage(session, scope.provider, scope.window) for key, scope in sorted(scopes.items())}
    admissions: list[Admission] = []
    for reservation in reservations:
        amount = reservation.amount_usd if reservation.priced else 0.0
        admission = Admission()
        for scope in reservation.scopes:
            if scope.limit.action is not LimitAction.BLOCK:
                continue
            held = usage[(scope.key, scope.window.start)]
            if held.committed_usd + amount > scope.limit.amount + _EPSILON or (
                held.committed_usd >= scope.limit.amount - _EPSILON
            ):
                admission.refusal = _refusal(scope, held, amount)
                break
        if admission.refusal is None:
            for scope in reservation.scopes:
                held = usage[(scope.key, scope.window.start)]
                warning = _warning(scope, held, amount)
                if warning is not None:
                    admission.warnings.append(warning)
                held.reserved_usd += amount
            if not reservation.priced:
                admission.warnings.append(
                    "No price is known for this job's hardware, so nothing was reserved for it: spending "
                    "limits count its cost only as it accrues."
                )
        admissions.append(admission)
    return admissions
