"""Applying what a provider says about a run to its job: state, progress, cost and log.

These functions change a job row the caller has locked, inside the caller's transaction; they do
no I/O. The scheduler's syncs (``services.dispatch``) and verified webhooks
(``services.webhooks``) both use them, so a report means the same whichever way it came.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from cloudtuner.core.states import JobStatus, is_legal_transition
from cloudtuner.db.tables import JobLogRow, JobRow
from cloudtuner.providers.base import CloudJobInfo
from cloudtuner.services import costs
from cloudtuner.services.context import ServiceContext
from cloudtuner.services.costs_prices import provider_price
from cloudtuner.services.transitions import transition_job


def append_log(job: JobRow, full_log: str, now: datetime) -> JobLogRow | None:
    """Return a chunk with the part of ``full_log`` not yet stored, and count it on the job."""
    if len(full_log) <= job.log_length:
        return None
    chunk = JobLogRow(job_id=job.id, start_offset=job.log_length, content=full_log[job.log_length :], created_at=now)
    job.log_length = len(full_log)
    return chunk


def apply_observation(ctx: ServiceContext, session: AsyncSession, job: JobRow, info: CloudJobInfo, cause: str) -> None:
    """Bring a locked job in line with what its provider reported.

    Progress is taken as reported; cost is accrued from the report (``services.costs.accrue``),
    and a job whose cost reaches its budget cap is marked for cancel. The state moves forward
    only: an observation that is late or out of order (a run 'starting' for a job already
    'running') changes no state, and a finished job is never moved again.

    A run that started and ended between two reads (first seen finished) still goes through
    ``running``, at the start time its provider reports, so that the job has a start time, a
    duration and the running step in its timeline.
    """
    now = ctx.clock.now()
    if info.progress is not None:
        job.progress = info.progress.to_dict()
    if info.hardware and not job.hardware:
        job.hardware = info.hardware
    job.updated_at = now
    current = JobStatus(job.status)
    target = info.status.as_job_status()
    if not (current.is_terminal or target is current or not is_legal_transition(current, target)) and (
        target is not JobStatus.QUEUED
    ):
        if target.is_terminal and _ran_unseen(job, info, current):
            started = _reported_start(job, info, now)
            job.started_at = started
            transition_job(session, job, JobStatus.RUNNING, cause="provider reported the run's start", now=started)
        if target is JobStatus.FAILED and info.error:
            job.error = info.error
        transition_job(session, job, target, cause=cause, now=now, detail=info.error)
    # After the transition: a run seen running for the first time has its start time now.
    apply_cost(ctx, job, info, now)
    costs.enforce_budget(job, now)


def _ran_unseen(job: JobRow, info: CloudJobInfo, current: JobStatus) -> bool:
    """Return whether a finished run's report shows a start that the job has not recorded."""
    return info.started_at is not None and job.started_at is None and is_legal_transition(current, JobStatus.RUNNING)


def _reported_start(job: JobRow, info: CloudJobInfo, now: datetime) -> datetime:
    """Return the provider's start time of a job's run, kept between the job's dispatch and ``now``
    (a provider's clock may differ from ours)."""
    assert info.started_at is not None
    earliest = job.dispatch_started_at or job.created_at
    return min(max(info.started_at, earliest), now)


def apply_cost(ctx: ServiceContext, job: JobRow, info: CloudJobInfo, now: datetime) -> None:
    """Accrue a locked job's cost from a provider report (see ``services.costs``)."""
    costs.accrue(job, info, now, provider_price(ctx.providers.find(job.provider), info.hardware or job.hardware))
