"""Leases on job rows: how one process at a time works on a job without holding a lock.

A lease is three columns on the job: who holds it, a random token, and when it expires. It is
taken with a guarded UPDATE, renewed by a heartbeat while slow work runs, and checked again
before a result is written: a holder whose lease expired has its result dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.sql.dml import ReturningUpdate
from sqlalchemy.sql.elements import ColumnElement

from cloudtuner.db.tables import Base, JobRow
from cloudtuner.services.context import ServiceContext

log = logging.getLogger(__name__)

JOBS = Base.metadata.tables["jobs"]


def lease_is_free(now_param: object) -> ColumnElement[bool]:
    """Return the condition 'nobody holds a live lease on this job' at time ``now_param``."""
    # On the table's column: an ORM query takes it as well, and a plain UPDATE stays plain.
    return or_(JOBS.c.lease_expires_at.is_(None), JOBS.c.lease_expires_at < now_param)


async def claim_jobs(
    ctx: ServiceContext,
    owner: str,
    condition: ColumnElement[bool],
    *,
    order_by: Sequence[Any] | None = None,
    limit: int = 20,
) -> list[tuple[str, str]]:
    """Lease up to ``limit`` jobs matching ``condition``; return (job id, lease token) pairs.

    Safe with several processes on one database: a job is leased by exactly one of them.

    The candidates are read first, in a read transaction, which never waits for or holds the write
    lock; a write transaction is opened only when there is something to take. There each one is
    taken with a guarded UPDATE (``condition`` and a free lease, checked again), which decides who
    wins: a job another process took, or that changed, in between is simply not claimed. The jobs
    taken together share one lease token (a token names a claim, not a job).
    """
    now = ctx.clock.now()
    query = select(JobRow.id).where(condition, lease_is_free(now))
    query = query.order_by(*(order_by or [JobRow.id])).limit(limit)
    async with ctx.db.read() as session:
        candidates = (await session.scalars(query)).all()
    return await take_jobs(ctx, owner, candidates, take_statement(condition))


def take_statement(condition: ColumnElement[bool]) -> ReturningUpdate[str]:
    """Return the guarded UPDATE that leases the candidates matching ``condition``, for :func:`take_jobs`.

    A caller with a fixed condition builds it once (on ``JOBS.c`` columns, so that it runs as a
    plain statement) and reuses it: building a statement and its cache key costs more than
    running it.
    """
    return (
        update(JOBS)
        .where(JOBS.c.id.in_(bindparam("ids", expanding=True)), condition, lease_is_free(bindparam("now")))
        .values(
            lease_owner=bindparam("new_owner"),
            lease_token=bindparam("new_token"),
            lease_expires_at=bindparam("new_expires"),
        )
        .returning(JOBS.c.id)
        .execution_options(synchronize_session=False)  # for a condition on ORM attributes
    )


async def take_jobs(
    ctx: ServiceContext, owner: str, candidates: Sequence[str], statement: ReturningUpdate[str]
) -> list[tuple[str, str]]:
    """Lease those of ``candidates`` that still match the condition of ``statement`` (from
    :func:`take_statement`) and have a free lease; return (job id, lease token) pairs in the order
    of ``candidates``.

    For a caller that already read its candidates (outside any write transaction): the guarded
    UPDATE, in one write transaction, decides between processes, as in :func:`claim_jobs`. No
    candidates, no transaction.
    """
    if not candidates:
        return []
    now = ctx.clock.now()
    token = secrets.token_hex(16)
    params = {
        "ids": list(candidates),
        "now": now,
        "new_owner": owner,
        "new_token": token,
        "new_expires": now + timedelta(seconds=ctx.settings.lease_seconds),
    }
    async with ctx.db.transaction() as session:
        claimed = set((await session.execute(statement, params)).scalars().all())
    return [(job_id, token) for job_id in candidates if job_id in claimed]


async def renew_lease(ctx: ServiceContext, job_id: str, token: str) -> bool:
    """Extend a lease this process holds; return False if it was lost."""
    expires = ctx.clock.now() + timedelta(seconds=ctx.settings.lease_seconds)
    async with ctx.db.transaction() as session:
        result = await session.execute(
            update(JobRow)
            .where(JobRow.id == job_id, JobRow.lease_token == token)
            .values(lease_expires_at=expires)
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def release_lease(ctx: ServiceContext, job_id: str, token: str) -> None:
    """Give up a lease this process holds (a no-op if it was lost)."""
    async with ctx.db.transaction() as session:
        await session.execute(
            update(JobRow)
            .where(JobRow.id == job_id, JobRow.lease_token == token)
            .values(lease_owner=None, lease_token=None, lease_expires_at=None)
            .execution_options(synchronize_session=False)
        )


def holds_lease(job: JobRow, token: str) -> bool:
    """Return True if ``token`` is the job's current lease."""
    return job.lease_token == token


@contextlib.asynccontextmanager
async def lease_heartbeat(ctx: ServiceContext, job_id: str, token: str) -> AsyncIterator[None]:
    """Renew the lease every third of its length while the body runs.

    Most bodies (a provider call) end long before the first renewal is due: until then only a
    timer is set, and the renewing task is started when it fires.
    """
    interval = ctx.settings.lease_seconds / 3

    async def beat() -> None:
        while True:
            try:
                if not await renew_lease(ctx, job_id, token):
                    log.warning("lost the lease on job %s while working on it", job_id)
                    return
            except Exception:
                log.exception("could not renew the lease on job %s", job_id)
            await asyncio.sleep(interval)

    loop = asyncio.get_running_loop()
    task: asyncio.Task[None] | None = None

    def start() -> None:
        nonlocal task
        task = loop.create_task(beat(), name=f"lease-heartbeat-{job_id}")

    timer = loop.call_later(interval, start)
    try:
        yield
    finally:
        timer.cancel()
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
