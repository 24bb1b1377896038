"""Jobs as users see them: list, show, logs, cancel, delete (submitting is ``services.submissions``).

Every status change goes through ``services.transitions``.
"""

from __future__ import annotations

import base64
import binascii
import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Integer, Select, bindparam, func, select, union_all
from sqlalchemy.sql.elements import ColumnElement

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
from cloudtuner.db.tables import ArtifactRow, JobEventRow, JobLogRow, JobRow
from cloudtuner.schemas.jobs import (
    CancelJobResponse,
    JobDetail,
    JobLogsResponse,
)
from cloudtuner.services.artifacts import delete_local_files, load_artifacts
from cloudtuner.services.context import ServiceContext
from cloudtuner.services.dispatch import cancel_at_provider
from cloudtuner.services.job_views import JOBS, SUMMARY_COLUMNS, job_detail, summary_fields
from cloudtuner.services.transitions import lock_job, transition_job
from cloudtuner.storage import FilesystemObjectStore

log = logging.getLogger(__name__)

MAX_PAGE_SIZE = 500


@dataclass(frozen=True)
class JobPage:
    """A page of jobs, newest first, and the cursor of the next page.

    Each job is the wire form of a ``JobSummary`` (``job_views.summary_fields``), ready to be
    serialised as it is.
    """

    jobs: list[dict[str, Any]]
    next_cursor: str | None


# --- read ---------------------------------------------------------------------------------------


def _check_can_view(principal: Principal, job: JobRow) -> None:
    _check_can_view_owned(principal, job.id, job.owner_id)


def _check_can_view_owned(principal: Principal, job_id: str, owner_id: str) -> None:
    if principal.can(Permission.JOB_VIEW_ALL):
        return
    if owner_id == principal.id and principal.can(Permission.JOB_VIEW_OWN):
        return
    # Someone else's job is reported as missing, so ids cannot be probed.
    raise JobNotFoundError(f"No job has the id {job_id!r}.")


async def load_detail(ctx: ServiceContext, job_id: str, principal: Principal | None = None) -> JobDetail:
    """Return one job with its timeline, checking first that ``principal`` (if given) may see it.

    Raises:
        JobNotFoundError: no such job, or it belongs to someone whose jobs the caller cannot see.
    """
    async with ctx.db.read() as session:
        job = await session.get(JobRow, job_id)
        if job is None:
            raise JobNotFoundError(f"No job has the id {job_id!r}.")
        if principal is not None:
            _check_can_view(principal, job)
        events = (
            await session.scalars(select(JobEventRow).where(JobEventRow.job_id == job_id).order_by(JobEventRow.id))
        ).all()
        delivered = await load_artifacts(session, job_id, job.publishing)
        return job_detail(job, list(events), ctx.clock.now(), delivered)


async def get_job(ctx: ServiceContext, principal: Principal, job_id: str) -> JobDetail:
    """Return one job with its config and timeline.

    Raises:
        JobNotFoundError: no such job, or it belongs to someone whose jobs the caller cannot see.
    """
    return await load_detail(ctx, job_id, principal)


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


@functools.cache
def _page_statement(own_only: bool, by_provider: bool, after_cursor: bool, status_count: int) -> Select[Any]:
    """Return the SELECT of one page of job summaries, newest first, for one shape of filters.

    Its parameters are bound at execution: ``owner_id``, ``provider``, ``before`` (the cursor's
    id), ``status_0``, ``status_1``, ... and ``size`` (rows to read). A statement is built once per
    shape (at most 2 x 2 x 2 x 9 of them), which saves building and hashing one per request.

    Every filter is an index range read in id order (``ix_jobs_status_id``, ``ix_jobs_provider_id``,
    ``ix_jobs_owner_id_id``, the primary key) that stops after ``size`` rows, at any depth. Several
    statuses are one such read of ids per status, merged, and the page's rows are then read by id:
    ``status IN (...)`` would be planned as a read of every job in those states and a sort.
    """
    filters: list[ColumnElement[bool]] = []
    if own_only:
        filters.append(JOBS.c.owner_id == bindparam("owner_id"))
    if by_provider:
        filters.append(JOBS.c.provider == bindparam("provider"))
    if after_cursor:
        filters.append(JOBS.c.id < bindparam("before"))
    size = bindparam("size", type_=Integer)
    if status_count <= 1:
        if status_count:
            filters.append(JOBS.c.status == bindparam("status_0"))
        return select(*SUMMARY_COLUMNS).where(*filters).order_by(JOBS.c.id.desc()).limit(size)
    arms = [
        select(JOBS.c.id)
        .where(*filters, JOBS.c.status == bindparam(f"status_{index}"))
        .order_by(JOBS.c.id.desc())
        .limit(size)
        .subquery()
        for index in range(status_count)
    ]
    merged = union_all(*(select(arm.c.id) for arm in arms)).subquery()
    page_ids = select(merged.c.id).order_by(merged.c.id.desc()).limit(size)
    return select(*SUMMARY_COLUMNS).where(JOBS.c.id.in_(page_ids)).order_by(JOBS.c.id.desc())


def _page_query(
    principal: Principal, statuses: list[JobStatus] | None, provider: str | None, before: str | None, size: int
) -> tuple[Select[Any], dict[str, Any]]:
    """Return the statement and parameters that read ``size`` job summaries (see ``_page_statement``)."""
    own_only = not principal.can(Permission.JOB_VIEW_ALL)
    wanted = list(dict.fromkeys(s.value for s in statuses or ()))
    params: dict[str, Any] = {"size": size, **{f"status_{index}": value for index, value in enumerate(wanted)}}
    if own_only:
        params["owner_id"] = principal.id
    if provider:
        params["provider"] = provider
    if before is not None:
        params["before"] = before
    return _page_statement(own_only, bool(provider), before is not None, len(wanted)), params


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
    before = decode_cursor(cursor) if cursor else None
    query, params = _page_query(principal, statuses, provider, before, limit + 1)
    async with ctx.db.read() as session:
        rows = (await session.execute(query, params)).all()
    now = ctx.clock.now()
    page = [summary_fields(row, now) for row in rows[:limit]]
    next_cursor = encode_cursor(rows[limit - 1][0]) if len(rows) > limit else None
    return JobPage(jobs=page, next_cursor=next_cursor)


async def get_job_logs(
    ctx: ServiceContext, principal: Principal, job_id: str, *, offset: int = 0, tail_lines: int | None = None
) -> JobLogsResponse:
    """Return a job's log from character ``offset`` on (or its last ``tail_lines`` lines).

    Raises:
        JobNotFoundError: no such job the caller may see.
    """
    async with ctx.db.read() as session:
        # Only what is needed here: a follower polls this, and the row's config can be large.
        job = (
            await session.execute(select(JobRow.owner_id, JobRow.status, JobRow.log_length).where(JobRow.id == job_id))
        ).one_or_none()
        if job is None:
            raise JobNotFoundError(f"No job has the id {job_id!r}.")
        _check_can_view_owned(principal, job_id, job.owner_id)
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


@dataclass(frozen=True)
class DeletedJob:
    """What deleting a job removed: delivered files deleted from this server, and files left in place."""

    artifacts_deleted: int = 0
    artifacts_kept: int = 0


async def delete_job(
    ctx: ServiceContext, principal: Principal, job_id: str, *, artifact_store: FilesystemObjectStore | None = None
) -> DeletedJob:
    """Delete a finished job with its events, logs and artifact records.

    The files it delivered stay where they are, unless ``artifact_store`` (the built-in endpoint's
    store) is given: then the job's folder there is deleted too, after the job. Files delivered
    to S3 or the Hub are never deleted by cloudtuner.

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
        recorded = (
            await session.execute(
                select(ArtifactRow.destination, func.count())
                .where(ArtifactRow.job_id == job_id)
                .group_by(ArtifactRow.destination)
            )
        ).all()
        await session.delete(job)
    counts = {destination: int(count) for destination, count in recorded}
    total = sum(counts.values())
    if artifact_store is None:
        return DeletedJob(artifacts_kept=total)
    deleted = await delete_local_files(ctx, artifact_store, job_id)
    return DeletedJob(artifacts_deleted=deleted, artifacts_kept=total - counts.get("local", 0))
