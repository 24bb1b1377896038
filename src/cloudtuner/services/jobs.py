"""Jobs as users see them: list, show, logs, cancel, delete (submitting is ``services.submissions``).

Every status change goes through ``services.transitions``.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import defer

from cloudtuner.core.errors import (
    InvalidCursorError,
    JobAlreadyFinishedError,
    JobNotFinishedError,
    JobNotFoundError,
    PermissionDeniedError,
)
from cloudtuner.core.ids import is_sortable_id
from cloudtuner.core.permissions import Permission, Principal
from cloudtuner.core.states import JobStatus
from cloudtuner.db.tables import JobEventRow, JobLogRow, JobRow
from cloudtuner.schemas.jobs import (
    CancelJobResponse,
    JobDetail,
    JobLogsResponse,
    JobSummary,
)
from cloudtuner.services.context import ServiceContext
from cloudtuner.services.dispatch import cancel_at_provider
from cloudtuner.services.job_views import job_detail, job_summary
from cloudtuner.services.transitions import lock_job, transition_job

log = logging.getLogger(__name__)

MAX_PAGE_SIZE = 500


@dataclass(frozen=True)
class JobPage:
    """A page of jobs, newest first, and the cursor of the next page."""

    jobs: list[JobSummary]
    next_cursor: str | None


# --- read ---------------------------------------------------------------------------------------


def _check_can_view(principal: Principal, job: JobRow) -> None:
    if principal.can(Permission.JOB_VIEW_ALL):
        return
    if job.owner_id == principal.id and principal.can(Permission.JOB_VIEW_OWN):
        return
    # Someone else's job is reported as missing, so ids cannot be probed.
    raise JobNotFoundError(f"No job has the id {job.id!r}.")


async def load_detail(ctx: ServiceContext, job_id: str) -> JobDetail:
    async with ctx.db.read() as session:
        job = await session.get(JobRow, job_id)
        if job is None:
            raise JobNotFoundError(f"No job has the id {job_id!r}.")
        events = (
            await session.scalars(select(JobEventRow).where(JobEventRow.job_id == job_id).order_by(JobEventRow.id))
        ).all()
        return job_detail(job, list(events), ctx.clock.now())


async def get_job(ctx: ServiceContext, principal: Principal, job_id: str) -> JobDetail:
    """Return one job with its config and timeline.

    Raises:
        JobNotFoundError: no such job, or it belongs to someone whose jobs the caller cannot see.
    """
    async with ctx.db.read() as session:
        job = await session.get(JobRow, job_id)
        if job is None:
            raise JobNotFoundError(f"No job has the id {job_id!r}.")
        _check_can_view(principal, job)
        events = (
            await session.scalars(select(JobEventRow).where(JobEventRow.job_id == job_id).order_by(JobEventRow.id))
        ).all()
        return job_detail(job, list(events), ctx.clock.now())


def encode_cursor(job_id: str) -> str:
    """Return the opaque cursor that continues a listing after ``job_id``."""
    return base64.urlsafe_b64encode(job_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    """Return the job id inside a cursor.

    Raises:
        InvalidCursorError: the cursor was not made by :func:`encode_cursor`.
    """
    try:
        job_id = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidCursorError() from exc
    if not is_sortable_id(job_id):
        raise InvalidCursorError()
    return job_id


async def list_jobs(
    ctx: ServiceContext,
    principal: Principal,
    *,
    limit: int = 50,
    statuses: list[JobStatus] | None = None,
    provider: str | None = None,
    cursor: str | None = None,
) -> JobPage:
    """Return a page of the jobs the caller may see, newest first.

    Paging is by keyset on the job id, so every page costs the same however deep it is.

    Raises:
        InvalidCursorError: the cursor is not one this server made.
    """
    limit = max(1, min(limit, MAX_PAGE_SIZE))
    query = select(JobRow).options(
        defer(JobRow.config), defer(JobRow.dataloader_config), defer(JobRow.config_snapshot), defer(JobRow.publishing)
    )
    if not principal.can(Permission.JOB_VIEW_ALL):
        query = query.where(JobRow.owner_id == principal.id)
    if statuses:
        query = query.where(JobRow.status.in_([s.value for s in statuses]))
    if provider:
        query = query.where(JobRow.provider == provider)
    if cursor:
        query = query.where(JobRow.id < decode_cursor(cursor))
    query = query.order_by(JobRow.id.desc()).limit(limit + 1)
    async with ctx.db.read() as session:
        rows = (await session.scalars(query)).all()
    now = ctx.clock.now()
    page = [job_summary(row, now) for row in rows[:limit]]
    next_cursor = encode_cursor(rows[limit - 1].id) if len(rows) > limit else None
    return JobPage(jobs=page, next_cursor=next_cursor)


async def get_job_logs(
    ctx: ServiceContext, principal: Principal, job_id: str, *, offset: int = 0, tail_lines: int | None = None
) -> JobLogsResponse:
    """Return a job's log from character ``offset`` on (or its last ``tail_lines`` lines).

    Raises:
        JobNotFoundError: no such job the caller may see.
    """
    async with ctx.db.read() as session:
        job = await session.get(JobRow, job_id)
        if job is None:
            raise JobNotFoundError(f"No job has the id {job_id!r}.")
        _check_can_view(principal, job)
        offset = max(0, min(offset, job.log_length))
        chunks = (
            await session.scalars(
                select(JobLogRow)
                .where(JobLogRow.job_id == job_id)
                .where(JobLogRow.start_offset + func.length(JobLogRow.content) > offset)
                .order_by(JobLogRow.start_offset)
            )
        ).all()
        status, total = JobStatus(job.status), job.log_length
    text = "".join(chunks_from(chunks, offset))
    if tail_lines is not None and tail_lines >= 0:
        lines = text.splitlines(keepends=True)
        kept = "".join(lines[-tail_lines:]) if tail_lines else ""
        offset = total - len(kept)
        text = kept
    return JobLogsResponse(job_id=job_id, logs=text, offset=offset, next_offset=total, status=status)


def chunks_from(chunks: Sequence[JobLogRow], offset: int) -> list[str]:
    """Return the parts of log ``chunks`` from character ``offset`` on."""
    return [chunk.content[max(0, offset - chunk.start_offset) :] for chunk in chunks]


# --- cancel and delete --------------------------------------------------------------------------


def _check_can_act(principal: Principal, job: JobRow, own: Permission, every: Permission) -> None:
    _check_can_view(principal, job)
    if principal.can(every) or (job.owner_id == principal.id and principal.can(own)):
        return
    raise PermissionDeniedError(f"You may not {own.value.split('.')[1]} job {job.id}.")


async def cancel_job(ctx: ServiceContext, principal: Principal, job_id: str) -> CancelJobResponse:
    """Cancel a job: at once if no provider holds it, otherwise by asking its provider to stop.

    If the provider cannot be reached, the request is kept and the scheduler carries it out;
    the reply then says ``cancel_requested: true``.

    Raises:
        JobNotFoundError: no such job the caller may see.
        PermissionDeniedError: the caller may see but not cancel it.
        JobAlreadyFinishedError: it has already completed, failed or been cancelled.
    """
    now = ctx.clock.now()
    async with ctx.db.transaction() as session:
        job = await lock_job(session, job_id)
        _check_can_act(principal, job, Permission.JOB_CANCEL_OWN, Permission.JOB_CANCEL_ALL)
        status = JobStatus(job.status)
        if status.is_terminal:
            raise JobAlreadyFinishedError(
                f"Job {job_id} has already {'been cancelled' if status is JobStatus.CANCELLED else status.value}; "
                "there is nothing to cancel.",
                status=status.value,
            )
        if job.cancel_requested_at is None:
            job.cancel_requested_at = now
            job.updated_at = now
        provider_job_id = job.provider_job_id
        if provider_job_id is None:
            # No provider run exists yet. If the dispatcher is creating one right now, it finds
            # the job cancelled when it applies the result, and cancels the run it made.
            transition_job(session, job, JobStatus.CANCELLED, cause="cancelled by user", now=now)
            return CancelJobResponse(job_id=job_id, status=JobStatus.CANCELLED, cancel_requested=False)
        provider_name = job.provider
    status = await cancel_at_provider(ctx, job_id, provider_name, provider_job_id)
    return CancelJobResponse(job_id=job_id, status=status, cancel_requested=not status.is_terminal)


async def delete_job(ctx: ServiceContext, principal: Principal, job_id: str) -> None:
    """Delete a finished job with its events and logs.

    Raises:
        JobNotFoundError: no such job the caller may see.
        PermissionDeniedError: the caller may see but not delete it.
        JobNotFinishedError: the job is still queued or running; cancel it first.
    """
    async with ctx.db.transaction() as session:
        job = await lock_job(session, job_id)
        _check_can_act(principal, job, Permission.JOB_DELETE_OWN, Permission.JOB_DELETE_ALL)
        if not JobStatus(job.status).is_terminal:
            raise JobNotFinishedError(
                f"Job {job_id} is {job.status}; only a finished job can be deleted. Cancel it first.",
                status=job.status,
            )
        await session.delete(job)
