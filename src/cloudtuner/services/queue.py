"""The job queue: which waiting job starts next, and how many may run at once.

Every job waits in ``queued`` until the dispatcher claims it. The order is priority (higher
first), then age; a waiting job gains one priority step per ``aging_seconds`` so that a stream of
high-priority work cannot starve it. Limits (global, per user, per provider) cap how many jobs are
*busy* at once: uploading, starting, running, or queued but already claimed by a dispatcher.

With no running limits set, claiming is the plain lease claim of ``services.leases``. With limits,
counting the busy jobs and claiming new ones happen in one write transaction that first locks the
queue's settings row, so two dispatchers (two server processes on PostgreSQL) cannot together go
past a limit; on SQLite the write transaction already excludes other writers.
"""

from __future__ import annotations

import secrets
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from cloudtuner.core.errors import InvalidRequestError, JobNotFoundError, QueueFullError
from cloudtuner.core.permissions import Principal
from cloudtuner.core.states import ACTIVE_STATES, JobStatus
from cloudtuner.db.tables import JobRow, SettingsDocumentRow
from cloudtuner.schemas.queue import QueuedJob, QueueLimits, QueueLimitsUpdate, QueueResponse
from cloudtuner.services.context import ServiceContext
from cloudtuner.services.jobs import load_detail
from cloudtuner.services.leases import claim_jobs, lease_is_free
from cloudtuner.services.settings_documents import merge_document, read_document

QUEUE_SCOPE = "queue"
_ACTIVE = [s.value for s in ACTIVE_STATES]
_QUEUED = JobStatus.QUEUED.value
RECENT_RUNS_FOR_ETA = 50


async def get_queue_limits(ctx: ServiceContext) -> QueueLimits:
    """Return the queue's limits (cached for a moment like every settings document)."""
    return QueueLimits.model_validate(await read_document(ctx, QUEUE_SCOPE))


async def update_queue_limits(ctx: ServiceContext, update_: QueueLimitsUpdate) -> QueueLimits:
    """Apply the fields given in ``update_``; a field sent as null removes that limit.

    Raises:
        InvalidRequestError: nothing to change, or a provider limit below 1.
    """
    changes = update_.model_dump(exclude_unset=True, mode="json")
    if not changes:
        raise InvalidRequestError("Nothing to change: send at least one limit, e.g. max_concurrent.")
    for provider, value in (changes.get("provider_limits") or {}).items():
        if value < 1:
            raise InvalidRequestError(f"The limit for {provider!r} must be 1 or more (leave it out for no limit).")
    if "provider_limits" in changes and changes["provider_limits"] is None:
        changes["provider_limits"] = {}
    if "aging_seconds" in changes and changes["aging_seconds"] is None:
        del changes["aging_seconds"]
    limits = QueueLimits.model_validate(await merge_document(ctx, QUEUE_SCOPE, changes))
    ctx.wake_dispatcher()
    return limits


# --- order ----------------------------------------------------------------------------------


def effective_priority(priority: int, created_at: datetime, now: datetime, aging_seconds: float) -> int:
    """Return a waiting job's priority plus one step per ``aging_seconds`` it has waited."""
    waited = max(0.0, (now - created_at).total_seconds())
    return priority + int(waited // aging_seconds)


async def _ordered_waiting(
    session: AsyncSession, limits: QueueLimits, now: datetime, count: int, *, free_only: bool
) -> list[Any]:
    """Return up to ``count`` waiting jobs in the order they should start.

    Reads the ``count`` best by stored priority and the ``count`` oldest, and orders their union
    by effective priority: a job that waited long enough to overtake is always among the oldest.
    """
    columns = (JobRow.id, JobRow.provider, JobRow.owner_id, JobRow.priority, JobRow.created_at)
    waiting = JobRow.status == _QUEUED
    if free_only:
        waiting = and_(waiting, lease_is_free(now))
    by_priority = select(*columns).where(waiting).order_by(JobRow.priority.desc(), JobRow.id).limit(count)
    oldest = select(*columns).where(waiting).order_by(JobRow.id).limit(count)
    rows = {row.id: row for row in (await session.execute(by_priority)).all()}
    rows.update({row.id: row for row in (await session.execute(oldest)).all()})

    def key(row: Any) -> tuple[int, str]:
        return (-effective_priority(row.priority, row.created_at, now, limits.aging_seconds), row.id)

    return sorted(rows.values(), key=key)[:count]


# --- claiming -------------------------------------------------------------------------------


async def claim_next(ctx: ServiceContext, owner: str, limit: int) -> list[tuple[str, str]]:
    """Lease up to ``limit`` waiting jobs, in queue order and within the limits.

    Returns (job id, lease token) pairs, like ``leases.claim_jobs``.
    """
    limits = await get_queue_limits(ctx)
    now = ctx.clock.now()
    if not limits.limits_running:
        async with ctx.db.read() as session:
            chosen = [row.id for row in await _ordered_waiting(session, limits, now, limit, free_only=True)]
        if not chosen:
            return []
        return await claim_jobs(ctx, owner, and_(JobRow.status == _QUEUED, JobRow.id.in_(chosen)), limit=limit)
    return await _claim_within_limits(ctx, owner, limits, now, limit)


async def _claim_within_limits(
    ctx: ServiceContext, owner: str, limits: QueueLimits, now: datetime, limit: int
) -> list[tuple[str, str]]:
    async with ctx.db.transaction() as session:
        # Serialises dispatchers that apply limits (the row exists: limits were saved in it).
        await session.execute(
            select(SettingsDocumentRow.scope).where(SettingsDocumentRow.scope == QUEUE_SCOPE).with_for_update()
        )
        busy_rows = (
            await session.execute(
                select(JobRow.provider, JobRow.owner_id, func.count())
                .where(
                    or_(
                        JobRow.status.in_(_ACTIVE),
                        and_(JobRow.status == _QUEUED, JobRow.lease_expires_at.is_not(None), ~lease_is_free(now)),
                    )
                )
                .group_by(JobRow.provider, JobRow.owner_id)
            )
        ).all()
        by_provider: Counter[str] = Counter()
        by_owner: Counter[str] = Counter()
        for provider, owner_id, count in busy_rows:
            by_provider[provider] += count
            by_owner[owner_id] += count
        total = sum(by_provider.values())
        chosen: list[str] = []
        # Look further than ``limit``: jobs of a provider or user at its limit are skipped.
        for row in await _ordered_waiting(session, limits, now, max(limit * 4, 50), free_only=True):
            if len(chosen) >= limit or (limits.max_concurrent and total >= limits.max_concurrent):
                break
            provider_cap = limits.provider_limits.get(row.provider, limits.max_concurrent_per_provider)
            if provider_cap and by_provider[row.provider] >= provider_cap:
                continue
            if limits.max_concurrent_per_user and by_owner[row.owner_id] >= limits.max_concurrent_per_user:
                continue
            chosen.append(row.id)
            total += 1
            by_provider[row.provider] += 1
            by_owner[row.owner_id] += 1
        if not chosen:
            return []
        token = secrets.token_hex(16)
        expires = now + timedelta(seconds=ctx.settings.lease_seconds)
        taken = await session.scalars(
            update(JobRow)
            .where(JobRow.id.in_(chosen), JobRow.status == _QUEUED, lease_is_free(now))
            .values(lease_owner=owner, lease_token=token, lease_expires_at=expires)
            .returning(JobRow.id)
            .execution_options(synchronize_session=False)
        )
        claimed = set(taken.all())
    return [(job_id, token) for job_id in chosen if job_id in claimed]


# --- submission check -----------------------------------------------------------------------


async def check_queued_limit(ctx: ServiceContext, principal: Principal) -> None:
    """Refuse a submission if its owner already has ``max_queued_per_user`` jobs waiting.

    Raises:
        QueueFullError: the owner is at the limit.
    """
    limits = await get_queue_limits(ctx)
    if not limits.max_queued_per_user:
        return
    async with ctx.db.read() as session:
        waiting = await session.scalar(
            select(func.count()).select_from(JobRow).where(JobRow.status == _QUEUED, JobRow.owner_id == principal.id)
        )
    if (waiting or 0) >= limits.max_queued_per_user:
        raise QueueFullError(
            f"You already have {waiting} jobs waiting in the queue, the most allowed per user "
            f"({limits.max_queued_per_user}); submit again once some have started, or ask an admin to raise "
            "max_queued_per_user."
        )


# --- views ----------------------------------------------------------------------------------


async def _recent_run_seconds(session: AsyncSession) -> dict[str, float]:
    """Return the mean run time of recent completed jobs, by provider."""
    recent = (
        select(JobRow.provider, JobRow.started_at, JobRow.finished_at)
        .where(JobRow.status == JobStatus.COMPLETED.value, JobRow.started_at.is_not(None))
        .order_by(JobRow.id.desc())
        .limit(RECENT_RUNS_FOR_ETA)
    )
    totals: dict[str, list[float]] = {}
    for provider, started_at, finished_at in (await session.execute(recent)).all():
        if started_at is not None and finished_at is not None:
            totals.setdefault(provider, []).append((finished_at - started_at).total_seconds())
    return {provider: sum(values) / len(values) for provider, values in totals.items() if values}


def _capacity(limits: QueueLimits, provider: str, running: int) -> int:
    caps = [
        cap
        for cap in (limits.provider_limits.get(provider, limits.max_concurrent_per_provider), limits.max_concurrent)
        if cap
    ]
    return max(1, min(caps) if caps else max(running, 1))


async def get_queue(ctx: ServiceContext, *, limit: int = 100) -> QueueResponse:
    """Return the queue's depth, busy count, limits and its first ``limit`` waiting jobs in order."""
    limits = await get_queue_limits(ctx)
    now = ctx.clock.now()
    async with ctx.db.read() as session:
        depth = await session.scalar(select(func.count()).select_from(JobRow).where(JobRow.status == _QUEUED)) or 0
        running_rows = (
            await session.execute(
                select(JobRow.provider, func.count()).where(JobRow.status.in_(_ACTIVE)).group_by(JobRow.provider)
            )
        ).all()
        ordered = await _ordered_waiting(session, limits, now, limit, free_only=False)
        run_seconds = await _recent_run_seconds(session)
    running: dict[str, int] = {provider: int(count) for provider, count in running_rows}
    ahead: Counter[str] = Counter()
    jobs = []
    for position, row in enumerate(ordered, start=1):
        mean = run_seconds.get(row.provider)
        capacity = _capacity(limits, row.provider, running.get(row.provider, 0))
        eta = None if mean is None else mean * (ahead[row.provider] // capacity)
        ahead[row.provider] += 1
        jobs.append(
            QueuedJob(
                job_id=row.id,
                position=position,
                provider=row.provider,
                owner_id=row.owner_id,
                priority=row.priority,
                effective_priority=effective_priority(row.priority, row.created_at, now, limits.aging_seconds),
                waiting_seconds=max(0.0, (now - row.created_at).total_seconds()),
                eta_seconds=eta,
            )
        )
    return QueueResponse(depth=depth, running=sum(running.values()), limits=limits, jobs=jobs)


async def get_position(ctx: ServiceContext, principal: Principal, job_id: str) -> QueuedJob:
    """Return a waiting job's place in the queue.

    The position counts the waiting jobs that start before it by effective priority.

    Raises:
        JobNotFoundError: no such job, or the caller may not see it.
        InvalidRequestError: the job is not waiting in the queue.
    """
    await load_detail(ctx, job_id, principal)  # raises if the caller may not see it
    async with ctx.db.read() as session:
        job = await session.get(JobRow, job_id)
    if job is None:
        raise JobNotFoundError(f"No job has the id {job_id!r}.")
    if job.status != _QUEUED:
        raise InvalidRequestError(f"Job {job_id} is {job.status}, not waiting in the queue.")
    limits = await get_queue_limits(ctx)
    now = ctx.clock.now()
    mine = effective_priority(job.priority, job.created_at, now, limits.aging_seconds)
    async with ctx.db.read() as session:
        rows = (
            await session.execute(
                select(JobRow.id, JobRow.provider, JobRow.priority, JobRow.created_at).where(
                    JobRow.status == _QUEUED, JobRow.id != job_id
                )
            )
        ).all()
        run_seconds = await _recent_run_seconds(session)
        running = (
            await session.scalar(
                select(func.count())
                .select_from(JobRow)
                .where(JobRow.status.in_(_ACTIVE), JobRow.provider == job.provider)
            )
            or 0
        )
    ahead = [
        row
        for row in rows
        if (p := effective_priority(row.priority, row.created_at, now, limits.aging_seconds)) > mine
        or (p == mine and row.id < job_id)
    ]
    same_provider = sum(1 for row in ahead if row.provider == job.provider)
    mean = run_seconds.get(job.provider)
    capacity = _capacity(limits, job.provider, running)
    return QueuedJob(
        job_id=job.id,
        position=len(ahead) + 1,
        provider=job.provider,
        owner_id=job.owner_id,
        priority=job.priority,
        effective_priority=mine,
        waiting_seconds=max(0.0, (now - job.created_at).total_seconds()),
        eta_seconds=None if mean is None else mean * (same_provider // capacity),
    )


async def set_priority(ctx: ServiceContext, principal: Principal, job_id: str, priority: int) -> QueuedJob:
    """Change a waiting job's priority (leads and admins: the route needs queue.manage).

    Raises:
        JobNotFoundError: no such job.
        InvalidRequestError: the job is no longer waiting.
    """
    async with ctx.db.transaction() as session:
        job = await session.get(JobRow, job_id, with_for_update=True)
        if job is None:
            raise JobNotFoundError(f"No job has the id {job_id!r}.")
        if job.status != _QUEUED:
            raise InvalidRequestError(f"Job {job_id} is {job.status}; only waiting jobs can change priority.")
        job.priority = priority
        job.updated_at = ctx.clock.now()
    ctx.wake_dispatcher()
    return await get_position(ctx, principal, job_id)
