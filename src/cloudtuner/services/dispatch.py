"""Starting jobs at their provider and keeping them in step with it.

The scheduler calls these functions; they are the only code that calls ``run_job``. Each works in
three steps: a short transaction under a lease, the provider call with no transaction open, and a
short transaction that applies the result only if the lease is still held.

Before ``run_job`` is called the job moves to ``starting`` and its attempt is counted: the intent
is on record. If the process dies, or the call's outcome is unknown, the job is left ``starting``
with no provider run; :func:`recover_job` then asks the provider for a run made for this job id
and attaches it, or requeues the job if the provider has none. A run is never created twice
because of a crash or a timeout.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from datetime import datetime, timedelta

from sqlalchemy import and_
from sqlalchemy.ext.asyncio import AsyncSession

from cloudtuner.core.errors import ProviderAuthError, ProviderError, ProviderRejectedError
from cloudtuner.core.progress import JobProgress
from cloudtuner.core.states import ACTIVE_STATES, JobStatus, is_legal_transition
from cloudtuner.db.tables import JobLogRow, JobRow
from cloudtuner.packaging.errors import PackagingError
from cloudtuner.providers.base import CloudJobInfo, CloudTrainerService, ProgressCallback, RunRequest
from cloudtuner.services.context import ServiceContext
from cloudtuner.services.leases import claim_jobs, holds_lease, lease_heartbeat, release_lease
from cloudtuner.services.settings_documents import get_provider_settings, public_url
from cloudtuner.services.transitions import lock_job, transition_job
from cloudtuner.services.uploads import PreparedUpload, discard_archive, prepare_archive, uploads_for

log = logging.getLogger(__name__)

_ACTIVE = [s.value for s in ACTIVE_STATES]
_PRE_RUN = [JobStatus.UPLOADING.value, JobStatus.STARTING.value]


# --- claiming -----------------------------------------------------------------------------------


async def claim_queued(ctx: ServiceContext, owner: str, limit: int = 20) -> list[tuple[str, str]]:
    """Lease queued jobs, highest priority then oldest first."""
    return await claim_jobs(
        ctx,
        owner,
        JobRow.status == JobStatus.QUEUED.value,
        order_by=[JobRow.priority.desc(), JobRow.id],
        limit=limit,
    )


async def claim_orphans(ctx: ServiceContext, owner: str, limit: int = 20) -> list[tuple[str, str]]:
    """Lease jobs left between 'intent recorded' and 'provider run attached'."""
    return await claim_jobs(
        ctx,
        owner,
        and_(JobRow.status.in_(_PRE_RUN), JobRow.provider_job_id.is_(None)),
        limit=limit,
    )


async def claim_due_for_sync(
    ctx: ServiceContext, owner: str, limit: int = 50, *, job_ids: list[str] | None = None
) -> list[tuple[str, str]]:
    """Lease jobs whose provider run should be read now.

    These are active jobs with a run whose next sync time has come (or every such job in
    ``job_ids``, regardless of time), and finished jobs awaiting one last read of logs and cost.
    """
    now = ctx.clock.now()
    has_run = JobRow.provider_job_id.is_not(None)
    if job_ids is not None:
        condition = and_(has_run, JobRow.id.in_(job_ids), JobRow.status.in_(_ACTIVE))
    else:
        condition = and_(has_run, JobRow.next_sync_at.is_not(None), JobRow.next_sync_at <= now)
    return await claim_jobs(ctx, owner, condition, order_by=[JobRow.next_sync_at, JobRow.id], limit=limit)


# --- applying what a provider says --------------------------------------------------------------


def append_log(job: JobRow, full_log: str, now: datetime) -> JobLogRow | None:
    """Return a chunk with the part of ``full_log`` not yet stored, and count it on the job."""
    if len(full_log) <= job.log_length:
        return None
    chunk = JobLogRow(job_id=job.id, start_offset=job.log_length, content=full_log[job.log_length :], created_at=now)
    job.log_length = len(full_log)
    return chunk


def apply_observation(ctx: ServiceContext, session: AsyncSession, job: JobRow, info: CloudJobInfo, cause: str) -> None:
    """Bring a locked job in line with what its provider reported.

    Progress and cost are taken as reported. The state moves forward only: an observation that
    is late or out of order (a run 'starting' for a job already 'running') changes no state, and a
    finished job is never moved again.
    """
    now = ctx.clock.now()
    if info.progress is not None:
        job.progress = info.progress.to_dict()
    if info.cost_usd is not None:
        job.cost_usd = info.cost_usd
    if info.hardware and not job.hardware:
        job.hardware = info.hardware
    job.updated_at = now
    current = JobStatus(job.status)
    target = info.status.as_job_status()
    if current.is_terminal or target is current or not is_legal_transition(current, target):
        return
    if target is JobStatus.QUEUED:
        return
    if target is JobStatus.FAILED and info.error:
        job.error = info.error
    transition_job(session, job, target, cause=cause, now=now, detail=info.error)


def _schedule_next_sync(ctx: ServiceContext, job: JobRow) -> None:
    if JobStatus(job.status).is_terminal:
        job.next_sync_at = None
    else:
        job.next_sync_at = ctx.clock.now() + timedelta(seconds=ctx.settings.reconcile_interval_seconds)


def _provider_for(ctx: ServiceContext, job: JobRow) -> CloudTrainerService | None:
    return ctx.providers.find(job.provider)


# --- dispatch -----------------------------------------------------------------------------------


async def dispatch_job(ctx: ServiceContext, job_id: str, token: str) -> None:
    """Start a leased queued job at its provider; see the module docstring for the guarantees.

    Jobs whose local datasets the provider uploads go through ``uploading`` (packaging, then the
    provider's upload) before ``starting``.
    """
    now = ctx.clock.now()
    async with ctx.db.transaction() as session:
        job = await lock_job(session, job_id)
        if not holds_lease(job, token) or job.status != JobStatus.QUEUED.value:
            return
        provider = _provider_for(ctx, job)
        if provider is None:
            transition_job(
                session, job, JobStatus.FAILED, cause="provider missing", now=now,
                detail=f"The provider {job.provider!r} is not configured on this server.",
            )  # fmt: skip
            return
        uploading = uploads_for(provider, job.dataloader_config)
        job.dispatch_attempts += 1
        job.dispatch_started_at = now
        transition_job(
            session, job, JobStatus.UPLOADING if uploading else JobStatus.STARTING, cause="dispatched", now=now,
            detail=f"attempt {job.dispatch_attempts} at {job.provider}",
        )  # fmt: skip
        request = replace(run_request(job), report_progress=progress_reporter(ctx, job_id, token))
    if request.hardware is None:
        request = replace(request, hardware=(await get_provider_settings(ctx, provider.provider_name)).default_hardware)
    base_url = await public_url(ctx) if provider.capabilities.webhooks else None
    if base_url:
        request = replace(request, webhook_url=f"{base_url}/api/webhooks/{provider.provider_name}?job_id={job_id}")
    prepared: PreparedUpload | None = None
    try:
        async with lease_heartbeat(ctx, job_id, token):
            if uploading:
                prepared = await prepare_archive(
                    ctx, provider, job_id, request.dataloader_config, request.report_progress
                )
                await _record_package(ctx, job_id, token, prepared)
                request = replace(request, dataloader_config=prepared.dataloader, dataset_archive=prepared.archive)
            info = await provider.run_job(request)
    except PackagingError as exc:
        await _fail_if_leased(ctx, job_id, token, exc.message, cause="packaging failed")
        return
    except (ProviderRejectedError, ProviderAuthError) as exc:
        await _fail_if_leased(ctx, job_id, token, exc.message, cause="provider refused the run")
        return
    except Exception as exc:
        # The run may or may not exist: leave the job for recover_job to reconcile by reference.
        log.warning("starting job %s at %s had no clear outcome: %s", job_id, provider.provider_name, exc)
        await release_lease(ctx, job_id, token)
        return
    finally:
        if prepared is not None:
            discard_archive(prepared.archive)
    await attach_run(ctx, job_id, token, info, cause="provider accepted the run")


def run_request(job: JobRow) -> RunRequest:
    """Return the run request for a job's current attempt (without archive, webhook or progress)."""
    return RunRequest(
        job_id=job.id,
        config=job.config,
        dataloader_config=job.dataloader_config,
        tracker_run_name=job.tracker_run_name,
        hardware=job.hardware,
        publishing=job.publishing,
        config_name=job.config_name,
        dispatched_at=job.dispatch_started_at,
    )


def progress_reporter(ctx: ServiceContext, job_id: str, token: str) -> ProgressCallback:
    """Return a callback that records slow pre-run work (packaging, uploading) as the job's progress.

    Writes at most twice a second, and only while this process holds the job's lease.
    """
    last_write = 0.0

    async def report(stage: str, done: int, total: int) -> None:
        nonlocal last_write
        moment = time.monotonic()
        if moment - last_write < 0.5 and done < total:
            return
        last_write = moment
        async with ctx.db.transaction() as session:
            job = await lock_job(session, job_id)
            if holds_lease(job, token) and not JobStatus(job.status).is_terminal:
                job.progress = JobProgress(stage=stage, step=done, total_steps=total).to_dict()
                job.updated_at = ctx.clock.now()

    return report


async def _record_package(ctx: ServiceContext, job_id: str, token: str, prepared: PreparedUpload) -> None:
    async with ctx.db.transaction() as session:
        job = await lock_job(session, job_id)
        if holds_lease(job, token):
            job.upload_summary = prepared.summary.model_dump(mode="json")
            job.package_sha256 = prepared.archive.sha256


async def _fail_if_leased(ctx: ServiceContext, job_id: str, token: str, message: str, *, cause: str) -> None:
    async with ctx.db.transaction() as session:
        job = await lock_job(session, job_id)
        if holds_lease(job, token) and not JobStatus(job.status).is_terminal:
            job.error = message
            transition_job(session, job, JobStatus.FAILED, cause=cause, now=ctx.clock.now(), detail=message)


async def attach_run(ctx: ServiceContext, job_id: str, token: str, info: CloudJobInfo, *, cause: str) -> None:
    """Record the provider run made for a leased job and apply its state.

    A job that ended while its run was being created (a user cancelled it) keeps the run's id,
    even though ending it released the lease, and the run is stopped at once: no run outlives
    its job. Otherwise a result from a lost lease is dropped; whoever holds the job now finds
    the run by reference.
    """
    stop_run = False
    async with ctx.db.transaction() as session:
        job = await lock_job(session, job_id)
        if JobStatus(job.status).is_terminal:
            if job.provider_job_id is not None:
                return
            job.provider_job_id = info.provider_job_id
            job.next_sync_at = ctx.clock.now()
            stop_run = not info.status.as_job_status().is_terminal
        elif not holds_lease(job, token):
            log.warning("dropping run %s for job %s: the lease was lost", info.provider_job_id, job_id)
            return
        else:
            job.provider_job_id = info.provider_job_id
            apply_observation(ctx, session, job, info, cause)
            _schedule_next_sync(ctx, job)
            job.lease_owner = job.lease_token = None
            job.lease_expires_at = None
        provider_name = job.provider
    if stop_run:
        await cancel_at_provider(ctx, job_id, provider_name, info.provider_job_id)


async def recover_job(ctx: ServiceContext, job_id: str, token: str) -> None:
    """Settle a job whose run creation was interrupted: attach its run, or requeue, or fail it."""
    async with ctx.db.read() as session:
        job = await session.get(JobRow, job_id)
        if job is None or not holds_lease(job, token) or job.provider_job_id is not None:
            return
        provider = _provider_for(ctx, job)
        attempts, status, request = job.dispatch_attempts, JobStatus(job.status), run_request(job)
    if status not in (JobStatus.UPLOADING, JobStatus.STARTING):
        await release_lease(ctx, job_id, token)
        return
    if provider is None:
        await _fail_if_leased(
            ctx, job_id, token, "The job's provider is not configured on this server.", cause="provider missing"
        )
        return
    try:
        async with lease_heartbeat(ctx, job_id, token):
            info = await provider.find_job_by_reference(job_id, request)
    except Exception as exc:
        log.warning("could not ask %s about job %s: %s", provider.provider_name, job_id, exc)
        await release_lease(ctx, job_id, token)
        return
    if info is not None:
        await attach_run(ctx, job_id, token, info, cause="found the run after an interrupted start")
        return
    now = ctx.clock.now()
    async with ctx.db.transaction() as session:
        job = await lock_job(session, job_id)
        if not holds_lease(job, token) or job.provider_job_id is not None:
            return
        if job.cancel_requested_at is not None:
            transition_job(session, job, JobStatus.CANCELLED, cause="cancelled by user", now=now)
        elif attempts >= ctx.settings.max_dispatch_attempts:
            message = f"Gave up after {attempts} attempts to start the job at {job.provider}."
            job.error = message
            transition_job(session, job, JobStatus.FAILED, cause="dispatch attempts exhausted", now=now, detail=message)
        else:
            transition_job(
                session,
                job,
                JobStatus.QUEUED,
                cause="requeued",
                now=now,
                detail="the provider holds no run for this job; it will be sent again",
            )
        job.lease_owner = job.lease_token = None
        job.lease_expires_at = None
    ctx.wake_dispatcher()


# --- sync ---------------------------------------------------------------------------------------


async def sync_job(ctx: ServiceContext, job_id: str, token: str) -> None:
    """Read a leased job's run (state, progress, cost, logs) and apply it.

    A job whose cancel was requested but not yet confirmed is cancelled at its provider here.

    Raises:
        ProviderError: the provider could not be read; the lease is released first.
    """
    async with ctx.db.read() as session:
        job = await session.get(JobRow, job_id)
        if job is None or not holds_lease(job, token) or job.provider_job_id is None:
            return
        provider = _provider_for(ctx, job)
        provider_job_id, finished = job.provider_job_id, JobStatus(job.status).is_terminal
        cancel_pending = job.cancel_requested_at is not None and not finished
    if provider is None:
        await release_lease(ctx, job_id, token)
        return
    try:
        async with lease_heartbeat(ctx, job_id, token):
            if cancel_pending:
                await provider.cancel_job(provider_job_id)
            info = await provider.get_job_status(provider_job_id)
            read_logs = provider.supports_live_logs or info.status.as_job_status().is_terminal
            logs = await provider.get_job_logs(provider_job_id) if read_logs else None
    except ProviderError:
        await _postpone_sync(ctx, job_id, token)
        raise
    async with ctx.db.transaction() as session:
        job = await lock_job(session, job_id)
        if not holds_lease(job, token):
            return
        now = ctx.clock.now()
        if logs is not None and (chunk := append_log(job, logs, now)) is not None:
            session.add(chunk)
        if cancel_pending and not JobStatus(job.status).is_terminal:
            transition_job(session, job, JobStatus.CANCELLED, cause="cancelled by user", now=now)
        if JobStatus(job.status).is_terminal:
            if info.cost_usd is not None and info.status.as_job_status().is_terminal:
                job.cost_usd = info.cost_usd
        else:
            apply_observation(ctx, session, job, info, cause=f"provider reported {info.status.value}")
        _schedule_next_sync(ctx, job)
        job.lease_owner = job.lease_token = None
        job.lease_expires_at = None


async def _postpone_sync(ctx: ServiceContext, job_id: str, token: str) -> None:
    async with ctx.db.transaction() as session:
        job = await lock_job(session, job_id)
        if holds_lease(job, token):
            job.next_sync_at = ctx.clock.now() + timedelta(seconds=ctx.settings.reconcile_interval_seconds)
            job.lease_owner = job.lease_token = None
            job.lease_expires_at = None


# --- cancel -------------------------------------------------------------------------------------


async def cancel_at_provider(ctx: ServiceContext, job_id: str, provider_name: str, provider_job_id: str) -> JobStatus:
    """Ask the provider to stop a job's run and mark the job cancelled once it agrees.

    Returns the job's status afterwards. If the provider cannot be reached the job keeps its
    cancel request and the scheduler tries again on its next sync.
    """
    provider = ctx.providers.find(provider_name)
    if provider is not None:
        try:
            await provider.cancel_job(provider_job_id)
        except ProviderError as exc:
            log.warning("could not cancel run %s of job %s yet: %s", provider_job_id, job_id, exc)
            async with ctx.db.read() as session:
                job = await session.get(JobRow, job_id)
                return JobStatus(job.status) if job else JobStatus.CANCELLED
    now = ctx.clock.now()
    async with ctx.db.transaction() as session:
        job = await lock_job(session, job_id)
        if not JobStatus(job.status).is_terminal:
            transition_job(session, job, JobStatus.CANCELLED, cause="cancelled by user", now=now)
        # One more read of the run afterwards collects its final logs and cost.
        job.next_sync_at = now
        return JobStatus(job.status)
