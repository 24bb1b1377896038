"""The single writer of job status.

Every change of a job's ``status`` goes through :func:`transition_job`, inside the caller's
transaction, on a row the caller locked with :func:`lock_job`. It checks the transition table,
stamps the times, releases the lease when the job ends, and records the event that the timeline
and live updates read. No other code assigns ``JobRow.status``.

**End-of-job hook.** When a job reaches a final state its reserved cost estimate is released
(``services.costs.release_reservation``): from then on it counts against spending limits with its
real cost only. The hook only changes the row, inside the caller's transaction; it does no I/O.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from cloudtuner.core.errors import IllegalTransitionError, JobNotFoundError
from cloudtuner.core.states import JobStatus, is_legal_transition
from cloudtuner.db.batched_inserts import add_row
from cloudtuner.db.tables import JobEventRow, JobRow
from cloudtuner.services import costs


async def lock_job(session: AsyncSession, job_id: str) -> JobRow:
    """Return the job row, locked until the transaction ends.

    PostgreSQL takes a row lock (SELECT ... FOR UPDATE); SQLite write transactions already hold
    the database's write lock.

    Raises:
        JobNotFoundError: no job has that id.
    """
    job = await session.get(JobRow, job_id, with_for_update=True, populate_existing=True)
    if job is None:
        raise JobNotFoundError(f"No job has the id {job_id!r}.")
    return job


async def lock_jobs(session: AsyncSession, job_ids: Collection[str]) -> dict[str, JobRow]:
    """Return the rows of ``job_ids`` that exist, by id, locked until the transaction ends.

    Rows are locked in id order, so that two transactions locking overlapping sets cannot
    deadlock on PostgreSQL.
    """
    if not job_ids:
        return {}
    query = (
        select(JobRow)
        .where(JobRow.id.in_(sorted(set(job_ids))))
        .order_by(JobRow.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return {job.id: job for job in (await session.scalars(query)).all()}


def record_event(
    session: AsyncSession,
    job: JobRow,
    *,
    from_status: JobStatus | None,
    cause: str,
    detail: str | None,
    now: datetime,
) -> None:
    """Add a timeline event for ``job`` at its current status (``db.batched_inserts.add_row``)."""
    add_row(
        session,
        JobEventRow,
        {
            "job_id": job.id,
            "from_status": from_status.value if from_status else None,
            "to_status": job.status,
            "cause": cause,
            "detail": detail,
            "created_at": now,
        },
    )


def transition_job(
    session: AsyncSession,
    job: JobRow,
    target: JobStatus,
    *,
    cause: str,
    now: datetime,
    detail: str | None = None,
) -> bool:
    """Move a locked job to ``target`` and record why; return False if it was already there.

    Raises:
        IllegalTransitionError: the transition table forbids the change (for example, out of a
            terminal state). Nothing is changed.
    """
    current = JobStatus(job.status)
    if current is target:
        return False
    if not is_legal_transition(current, target):
        raise IllegalTransitionError(
            f"Job {job.id} is {current.value}; it cannot become {target.value}.",
            job_id=job.id,
            current=current.value,
            target=target.value,
        )
    job.status = target.value
    job.updated_at = now
    if target is JobStatus.RUNNING and job.started_at is None:
        job.started_at = now
    if target is JobStatus.QUEUED:
        job.provider_job_id = None
    if target.is_terminal:
        job.finished_at = now
        job.lease_owner = job.lease_token = None
        job.lease_expires_at = None
        job.next_sync_at = None
        if target is JobStatus.FAILED and detail and not job.error:
            job.error = detail
        costs.release_reservation(job)
    record_event(session, job, from_status=current, cause=cause, detail=detail, now=now)
    return True
