"""Jobs as users see them: submit, list, show, logs, cancel, delete.

Submit only records the job; the scheduler starts it (see ``services.dispatch``). Every status
change goes through ``services.transitions``.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import defer

from cloudtuner.core.errors import (
    ConfigNotFoundError,
    IdempotencyKeyConflictError,
    InvalidConfigError,
    InvalidCursorError,
    JobAlreadyFinishedError,
    JobNotFinishedError,
    JobNotFoundError,
    MissingDataloaderError,
    PermissionDeniedError,
)
from cloudtuner.core.ids import is_sortable_id, new_sortable_id
from cloudtuner.core.permissions import Permission, Principal
from cloudtuner.core.states import JobStatus
from cloudtuner.db.tables import IdempotencyKeyRow, JobEventRow, JobLogRow, JobRow
from cloudtuner.schemas.jobs import (
    CancelJobResponse,
    JobDetail,
    JobLogsResponse,
    JobSummary,
    PreviewResponse,
    SubmitJobRequest,
)
from cloudtuner.schemas.settings import ConsentMode
from cloudtuner.services.configs import find_config
from cloudtuner.services.context import ServiceContext
from cloudtuner.services.dispatch import cancel_at_provider
from cloudtuner.services.fingerprints import fingerprint
from cloudtuner.services.job_views import job_detail, job_summary
from cloudtuner.services.settings_documents import get_cloud_settings
from cloudtuner.services.transitions import lock_job, record_event, transition_job
from cloudtuner.services.uploads import check_upload, summarize

log = logging.getLogger(__name__)

MAX_PAGE_SIZE = 500


@dataclass(frozen=True)
class SubmitResult:
    """A submitted job, and whether it came from an earlier request with the same key."""

    job: JobDetail
    idempotent_hit: bool


@dataclass(frozen=True)
class JobPage:
    """A page of jobs, newest first, and the cursor of the next page."""

    jobs: list[JobSummary]
    next_cursor: str | None


# --- submit -------------------------------------------------------------------------------------


async def _resolve_config(
    ctx: ServiceContext, request: SubmitJobRequest
) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    """Return (config, dataloader, snapshot) for a submission."""
    if request.config_name_to_load and request.config is not None:
        raise InvalidConfigError("Send either config_name_to_load or an inline config, not both.")
    if request.config_name_to_load:
        row = await find_config(ctx, request.config_name_to_load)
        if row is None:
            raise ConfigNotFoundError(
                f"No saved config is called {request.config_name_to_load!r}. "
                "Save it first with PUT /api/configs/{name} or `cloudtuner configs put`."
            )
        config, dataloader = row.config, row.dataloader_config
        if request.dataloader_config is not None:
            dataloader = [d.model_dump(exclude_none=True) for d in request.dataloader_config]
        snapshot = {"source": "saved", "name": row.name, "commit": row.latest_commit}
    elif request.config is not None:
        if request.dataloader_config is None:
            raise MissingDataloaderError(
                "An inline config needs a dataloader_config: a list of datasets, as in "
                "multidatabackend.json, for example "
                '[{"id": "training-images", "type": "local", "instance_data_dir": "/data/my-dataset"}].'
            )
        config = request.config
        dataloader = [d.model_dump(exclude_none=True) for d in request.dataloader_config]
        snapshot = {"source": "inline"}
    else:
        raise InvalidConfigError(
            "Say what to train: send config_name_to_load (a saved config) or an inline config "
            "with its dataloader_config."
        )
    if not dataloader:
        raise MissingDataloaderError("The dataloader_config is empty: a job needs at least one dataset.")
    ids = [dataset["id"] for dataset in dataloader]
    repeated = sorted({dataset_id for dataset_id in ids if ids.count(dataset_id) > 1})
    if repeated:
        raise InvalidConfigError(f"Dataset ids must be unique; repeated: {', '.join(repeated)}.")
    snapshot["sha256"] = fingerprint({"config": config, "dataloader_config": dataloader})
    return config, dataloader, snapshot


async def _idempotent_replay(
    ctx: ServiceContext, principal: Principal, key: str, request_fingerprint: str
) -> SubmitResult | None:
    """Return the job an unexpired key made, or None; refuse a key reused with another body."""
    async with ctx.db.read() as session:
        row = await session.get(IdempotencyKeyRow, (principal.id, key))
        if row is None or row.expires_at <= ctx.clock.now():
            return None
        if row.fingerprint != request_fingerprint:
            raise IdempotencyKeyConflictError(
                f"The idempotency_key {key!r} was already used with a different request; "
                "use a new key for a different job.",
                job_id=row.job_id,
            )
        job_id = row.job_id
    return SubmitResult(job=await _load_detail(ctx, job_id), idempotent_hit=True)


async def submit_job(
    ctx: ServiceContext, principal: Principal, provider_name: str, request: SubmitJobRequest
) -> SubmitResult:
    """Record a new job in the queue and wake the dispatcher; nothing is sent anywhere yet.

    With an ``idempotency_key``, the same caller sending the same request within the key's
    lifetime gets the job the first request created, however many requests race.

    Raises:
        UnknownProviderError: no provider has that name.
        ConfigNotFoundError: config_name_to_load names no saved config.
        MissingDataloaderError, InvalidConfigError: the config is incomplete.
        IdempotencyKeyConflictError: the key was used with a different request.
        PackagingError: a local dataset cannot be read, or is over the provider's upload limit.
        UploadConsentRequiredError, UploadsDisabledError: the consent mode forbids this upload.
    """
    provider = ctx.providers.get(provider_name)
    config, dataloader, snapshot = await _resolve_config(ctx, request)
    key = request.idempotency_key
    request_fingerprint = fingerprint(
        {"provider": provider_name, **request.model_dump(exclude={"idempotency_key"}, exclude_none=True)}
    )
    if key is not None:
        replay = await _idempotent_replay(ctx, principal, key, request_fingerprint)
        if replay is not None:
            return replay
    upload_summary = await check_upload(ctx, provider, dataloader, request.upload_consent)

    now = ctx.clock.now()
    job = JobRow(
        id=new_sortable_id(),
        owner_id=principal.id,
        provider=provider_name,
        status=JobStatus.QUEUED.value,
        priority=0,
        config_name=request.config_name_to_load,
        config=config,
        dataloader_config=dataloader,
        config_snapshot=snapshot,
        tracker_run_name=request.tracker_run_name,
        hardware=request.hardware,
        publishing=request.publishing,
        upload_consent=request.upload_consent,
        idempotency_key=key,
        upload_summary=upload_summary.model_dump(mode="json") if upload_summary else None,
        cost_usd=0.0,
        log_length=0,
        dispatch_attempts=0,
        created_at=now,
        updated_at=now,
    )
    try:
        async with ctx.db.transaction() as session:
            session.add(job)
            await session.flush()
            record_event(session, job, from_status=None, cause="submitted", detail=None, now=now)
            if key is not None:
                await session.execute(
                    delete(IdempotencyKeyRow).where(
                        IdempotencyKeyRow.principal_id == principal.id,
                        IdempotencyKeyRow.key == key,
                        IdempotencyKeyRow.expires_at <= now,
                    )
                )
                await session.flush()
                session.add(
                    IdempotencyKeyRow(
                        principal_id=principal.id,
                        key=key,
                        fingerprint=request_fingerprint,
                        job_id=job.id,
                        created_at=now,
                        expires_at=now + timedelta(hours=ctx.settings.idempotency_ttl_hours),
                    )
                )
    except IntegrityError:
        if key is None:
            raise
        # Another request with this key committed first: its job is the answer.
        replay = await _idempotent_replay(ctx, principal, key, request_fingerprint)
        if replay is None:
            raise
        return replay
    ctx.wake_dispatcher()
    return SubmitResult(job=job_detail(job, [_first_event(job, now)], now), idempotent_hit=False)


def _first_event(job: JobRow, now: datetime) -> JobEventRow:
    return JobEventRow(job_id=job.id, from_status=None, to_status=job.status, cause="submitted", created_at=now)


async def preview_job(ctx: ServiceContext, provider_name: str, request: SubmitJobRequest) -> PreviewResponse:
    """Return what submitting ``request`` would upload and whether it needs consent; change nothing.

    Raises:
        UnknownProviderError, ConfigNotFoundError, MissingDataloaderError, InvalidConfigError,
        PackagingError: as for :func:`submit_job`, except that an over-limit package is reported
            in the summary (``fits_upload_limit: false``) rather than refused.
    """
    provider = ctx.providers.get(provider_name)
    _config, dataloader, _snapshot = await _resolve_config(ctx, request)
    summary = await summarize(provider, dataloader)
    mode = (await get_cloud_settings(ctx)).upload_consent
    return PreviewResponse(
        provider=provider_name,
        uploads_local_data=summary is not None,
        consent_mode=mode.value,
        needs_upload_consent=summary is not None
        and mode is ConsentMode.ALWAYS_ASK
        and request.upload_consent is not True,
        upload_summary=summary,
    )


# --- read ---------------------------------------------------------------------------------------


def _check_can_view(principal: Principal, job: JobRow) -> None:
    if principal.can(Permission.JOB_VIEW_ALL):
        return
    if job.owner_id == principal.id and principal.can(Permission.JOB_VIEW_OWN):
        return
    # Someone else's job is reported as missing, so ids cannot be probed.
    raise JobNotFoundError(f"No job has the id {job.id!r}.")


async def _load_detail(ctx: ServiceContext, job_id: str) -> JobDetail:
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
