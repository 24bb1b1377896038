"""The job queue: which waiting job starts next, and how many may run at once.

Every job waits in ``queued`` until the dispatcher claims it. The order is priority (higher
first), then age; a waiting job gains one priority step per ``aging_seconds`` so that a stream of
high-priority work cannot starve it. A job starts at its submitter's role's priority
(``role_priorities`` in the limits); leads and admins may choose another, at submission or later.
Limits (global, per user, per team, per provider) cap how many jobs are *busy* at once: uploading,
starting, running, or queued but already claimed by a dispatcher. A job counts against the team
it was submitted under (``jobs.team``); jobs of no team count against no team limit.

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

from sqlalchemy import CompoundSelect, Integer, and_, bindparam, case, func, or_, select, union_all, update
from sqlalchemy.ext.asyncio import AsyncSession

from cloudtuner.core.errors import InvalidRequestError, JobNotFoundError, PermissionDeniedError, QueueFullError
from cloudtuner.core.permissions import LOCAL_PRINCIPAL_ID, Permission, Principal
from cloudtuner.core.roles import Role
from cloudtuner.core.states import ACTIVE_STATES, JobStatus
from cloudtuner.db.tables import JobRow, SettingsDocumentRow, UserRow
from cloudtuner.schemas.queue import (
    MAX_PRIORITY,
    MIN_PRIORITY,
    QueuedJob,
    QueueLimits,
    QueueLimitsUpdate,
    QueueResponse,
)
from cloudtuner.services.context import ServiceContext
from cloudtuner.services.leases import JOBS, lease_is_free, take_jobs, take_statement
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
    if "role_priorities" in changes:
        # The roles named change; the others keep theirs. null: every role back to its default.
        named = changes["role_priorities"]
        stored = (await read_document(ctx, QUEUE_SCOPE)).get("role_priorities") or {}
        changes["role_priorities"] = {} if named is None else {**stored, **named}
    limits = QueueLimits.model_validate(await merge_document(ctx, QUEUE_SCOPE, changes))
    ctx.wake_dispatcher()
    return limits


# --- order ----------------------------------------------------------------------------------


def effective_priority(priority: int, created_at: datetime, now: datetime, aging_seconds: float) -> int:
    """Return a waiting job's priority plus one step per ``aging_seconds`` it has waited."""
    waited = max(0.0, (now - created_at).total_seconds())
    return priority + int(waited // aging_seconds)


def _waiting_statement(*, free_only: bool) -> CompoundSelect[Any]:
    """Return the read of :func:`_ordered_waiting`, with parameters ``now`` and ``count``.

    Built once per shape and reused: building a statement and its cache key costs more than
    running it.
    """
    columns = (JobRow.id, JobRow.provider, JobRow.owner_id, JobRow.team, JobRow.priority, JobRow.created_at)
    waiting = JobRow.status == _QUEUED
    if free_only:
        waiting = and_(waiting, lease_is_free(bindparam("now", type_=JobRow.lease_expires_at.type)))
    count = bindparam("count", type_=Integer)
    by_priority = select(*columns).where(waiting).order_by(JobRow.priority.desc(), JobRow.id).limit(count)
    oldest = select(*columns).where(waiting).order_by(JobRow.id).limit(count)
    # One statement: each arm keeps its own order and limit (an index scan each).
    return union_all(select(by_priority.subquery()), select(oldest.subquery()))


_TAKE_QUEUED = take_statement(JOBS.c.status == _QUEUED)

_WAITING = {free_only: _waiting_statement(free_only=free_only) for free_only in (False, True)}


async def _ordered_waiting(
    session: AsyncSession, limits: QueueLimits, now: datetime, count: int, *, free_only: bool
) -> list[Any]:
    """Return up to ``count`` waiting jobs in the order they should start.

    Reads the ``count`` best by stored priority and the ``count`` oldest, and orders their union
    by effective priority: a job that waited long enough to overtake is always among the oldest.
    """
    params: dict[str, Any] = {"count": count, "now": now} if free_only else {"count": count}
    rows = {row.id: row for row in (await session.execute(_WAITING[free_only], params)).all()}

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
        # The read above chose them; the guarded UPDATE decides (no second read).
        return await take_jobs(ctx, owner, chosen, _TAKE_QUEUED)
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
                select(JobRow.provider, JobRow.owner_id, JobRow.team, func.count())
                .where(
                    or_(
                        JobRow.status.in_(_ACTIVE),
                        and_(JobRow.status == _QUEUED, JobRow.lease_expires_at.is_not(None), ~lease_is_free(now)),
                    )
                )
                .group_by(JobRow.provider, JobRow.owner_id, JobRow.team)
            )
        ).all()
        by_provider: Counter[str] = Counter()
        by_owner: Counter[str] = Counter()
        by_team: Counter[str | None] = Counter()
        for provider, owner_id, team, count in busy_rows:
            by_provider[provider] += count
            by_owner[owner_id] += count
            by_team[team] += count
        total = sum(by_provider.values())
        chosen: list[str] = []
        # Look further than ``limit``: jobs of a provider, user or team at its limit are skipped.
        for row in await _ordered_waiting(session, limits, now, max(limit * 4, 50), free_only=True):
            if len(chosen) >= limit or (limits.max_concurrent and total >= limits.max_concurrent):
                break
            provider_cap = limits.provider_limits.get(row.provider, limits.max_concurrent_per_provider)
            if provider_cap and by_provider[row.provider] >= provider_cap:
                continue
            if limits.max_concurrent_per_user and by_owner[row.owner_id] >= limits.max_concurrent_per_user:
                continue
            team_cap = limits.max_concurrent_per_team if row.team is not None else None
            if team_cap and by_team[row.team] >= team_cap:
                continue
            chosen.append(row.id)
            total += 1
            by_provider[row.provider] += 1
            by_owner[row.owner_id] += 1
            by_team[row.team] += 1
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


# --- submission checks ----------------------------------------------------------------------


async def starting_priority(ctx: ServiceContext, principal: Principal, role: Role, requested: int | None) -> int:
    """Return the priority a job submitted by ``principal`` starts at.

    That is ``requested`` when one is given, which needs ``queue.manage`` (leads and admins),
    else the default of the submitter's ``role`` (``role_priorities``).

    Raises:
        PermissionDeniedError: a priority was requested without ``queue.manage``.
        InvalidRequestError: the requested priority is out of range.
    """
    limits = await get_queue_limits(ctx)
    if requested is None:
        return limits.priority_for(role)
    if not MIN_PRIORITY <= requested <= MAX_PRIORITY:
        raise InvalidRequestError(f"A priority is between {MIN_PRIORITY} and {MAX_PRIORITY}; got {requested}.")
    if not principal.can(Permission.QUEUE_MANAGE):
        raise PermissionDeniedError(
            f"Choosing a job's priority needs the {Permission.QUEUE_MANAGE.value} permission (leads and admins); "
            f"submit without a priority and the job starts at your role's ({role.value}), "
            f"{limits.priority_for(role)}."
        )
    return requested


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


async def _owner_names(session: AsyncSession, owner_ids: set[str]) -> dict[str, str]:
    """Return the usernames of ``owner_ids`` (the local principal's jobs are ``local``'s)."""
    names = {LOCAL_PRINCIPAL_ID: LOCAL_PRINCIPAL_ID} if LOCAL_PRINCIPAL_ID in owner_ids else {}
    wanted = owner_ids - names.keys()
    if wanted:
        rows = await session.execute(select(UserRow.id, UserRow.username).where(UserRow.id.in_(wanted)))
        for user_id, username in rows.all():
            names[user_id] = username
    return names


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
        owners = await _owner_names(session, {row.owner_id for row in ordered})
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
                owner=owners.get(row.owner_id),
                team=row.team,
                priority=row.priority,
                effective_priority=effective_priority(row.priority, row.created_at, now, limits.aging_seconds),
                waiting_seconds=max(0.0, (now - row.created_at).total_seconds()),
                eta_seconds=eta,
            )
        )
    return QueueResponse(depth=depth, running=sum(running.values()), limits=limits, jobs=jobs)


def _may_see(principal: Principal, owner_id: str) -> bool:
    """Return True if ``principal`` may see a job of ``owner_id`` (the rule of ``services.jobs``)."""
    return principal.can(Permission.JOB_VIEW_ALL) or (
        owner_id == principal.id and principal.can(Permission.JOB_VIEW_OWN)
    )


async def _count_ahead(
    session: AsyncSession, job: Any, mine: int, limits: QueueLimits, now: datetime
) -> tuple[int, int]:
    """Return how many waiting jobs start before ``job`` (effective priority ``mine``): in all, and
    at its provider.

    A job is ahead if its effective priority is higher, or the same and it is older (a smaller
    id), as in :func:`_ordered_waiting`. Waiting only adds to a priority, so every job whose
    *stored* priority already puts it ahead is counted in SQL. Any other job can get ahead only
    by what it gained by waiting, so only jobs that have waited at least one step and whose
    priority is within reach of ``mine`` are read, and checked here.
    """
    others = and_(JobRow.status == _QUEUED, JobRow.id != job.id)
    surely_ahead = or_(JobRow.priority > mine, and_(JobRow.priority == mine, JobRow.id < job.id))
    counted, counted_here, oldest = (
        await session.execute(
            select(
                func.coalesce(func.sum(case((surely_ahead, 1), else_=0)), 0),
                func.coalesce(func.sum(case((and_(surely_ahead, JobRow.provider == job.provider), 1), else_=0)), 0),
                func.min(JobRow.created_at),
            ).where(others)
        )
    ).one()
    ahead, ahead_here = int(counted), int(counted_here)
    most_gained = 0 if oldest is None else effective_priority(0, oldest, now, limits.aging_seconds)
    if most_gained == 0:
        return ahead, ahead_here
    aged = await session.execute(
        select(JobRow.id, JobRow.provider, JobRow.priority, JobRow.created_at).where(
            others,
            ~surely_ahead,
            JobRow.created_at <= now - timedelta(seconds=limits.aging_seconds),
            JobRow.priority >= mine - most_gained,
        )
    )
    for row in aged.all():
        theirs = effective_priority(row.priority, row.created_at, now, limits.aging_seconds)
        if theirs > mine or (theirs == mine and row.id < job.id):
            ahead += 1
            ahead_here += row.provider == job.provider
    return ahead, ahead_here


async def get_position(ctx: ServiceContext, principal: Principal, job_id: str) -> QueuedJob:
    """Return a waiting job's place in the queue.

    The position counts the waiting jobs that start before it by effective priority.

    Raises:
        JobNotFoundError: no such job, or the caller may not see it.
        InvalidRequestError: the job is not waiting in the queue.
    """
    limits = await get_queue_limits(ctx)
    now = ctx.clock.now()
    async with ctx.db.read() as session:
        job = (
            await session.execute(
                select(
                    JobRow.id,
                    JobRow.status,
                    JobRow.provider,
                    JobRow.owner_id,
                    JobRow.team,
                    JobRow.priority,
                    JobRow.created_at,
                    UserRow.username,
                )
                .outerjoin(UserRow, UserRow.id == JobRow.owner_id)
                .where(JobRow.id == job_id)
            )
        ).first()
        if job is None or not _may_see(principal, job.owner_id):
            raise JobNotFoundError(f"No job has the id {job_id!r}.")
        if job.status != _QUEUED:
            raise InvalidRequestError(f"Job {job_id} is {job.status}, not waiting in the queue.")
        mine = effective_priority(job.priority, job.created_at, now, limits.aging_seconds)
        ahead, ahead_here = await _count_ahead(session, job, mine, limits, now)
        run_seconds = await _recent_run_seconds(session)
        running = (
            await session.scalar(
                select(func.count())
                .select_from(JobRow)
                .where(JobRow.status.in_(_ACTIVE), JobRow.provider == job.provider)
            )
            or 0
        )
    mean = run_seconds.get(job.provider)
    capacity = _capacity(limits, job.provider, running)
    return QueuedJob(
        job_id=job.id,
        position=ahead + 1,
        provider=job.provider,
        owner_id=job.owner_id,
        owner=LOCAL_PRINCIPAL_ID if job.owner_id == LOCAL_PRINCIPAL_ID else job.username,
        team=job.team,
        priority=job.priority,
        effective_priority=mine,
        waiting_seconds=max(0.0, (now - job.created_at).total_seconds()),
        eta_seconds=None if mean is None else mean * (ahead_here // capacity),
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
