"""Starting jobs at their provider and keeping them in step with it.

The scheduler calls these functions; they are the only code that calls ``run_job``. Each works in
three steps: a short transaction under a lease, the provider call with no transaction open, and a
short transaction that applies the result only if the lease is still held.

Before ``run_job`` is called the job moves to ``starting`` and its attempt is counted: the intent
is on record. If the process dies, or the call's outcome is unknown, the job is left ``starting``
with no provider run; :func:`recover_job` then asks the provider for a run made for this job id
and attaches it, or requeues the job if the provider has none. A run is never created twice
because of a crash or a timeout.

Cost is accrued in the same changes that apply a provider's report (``services.costs``): no
extra transaction per job. A job whose cost reaches its budget cap is marked for cancel there,
and the next sync stops its run. Every provider call is timed for the metrics
(``services.metrics_telemetry``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncSession

from cloudtuner.core.errors import (
    ConfigurationError,
    ProviderAuthError,
    ProviderError,
    ProviderRejectedError,
    ProviderUnavailableError,
)
from cloudtuner.core.progress import JobProgress
from cloudtuner.core.states import ACTIVE_STATES, JobStatus
from cloudtuner.db.tables import JobRow
from cloudtuner.packaging.errors import PackagingError
from cloudtuner.providers.base import (
    NOTHING_CREATED,
    CloudJobInfo,
    CloudTrainerService,
    ProgressCallback,
    RunRequest,
)
from cloudtuner.services import costs, publishing
from cloudtuner.services.context import ServiceContext
from cloudtuner.services.job_updates import JobChange
from cloudtuner.services.leases import claim_jobs, holds_lease, lease_heartbeat, release_lease
from cloudtuner.services.metrics_telemetry import timed
from cloudtuner.services.observations import append_log, apply_cost, apply_observation
from cloudtuner.services.settings_documents import get_provider_settings, public_url
from cloudtuner.services.storage_credentials import JobStorageCredentials, add_job_storage_credentials
from cloudtuner.services.transitions import lock_job, transition_job
from cloudtuner.services.uploads import PreparedUpload, discard_archive, prepare_archive, uploads_for

log = logging.getLogger(__name__)

_ACTIVE = [s.value for s in ACTIVE_STATES]
_PRE_RUN = [JobStatus.UPLOADING.value, JobStatus.STARTING.value]
FINAL_COST_WINDOW = timedelta(minutes=10)
"""How long after a job ends its run is read again while the provider's final cost is not in."""


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


# --- sync scheduling ----------------------------------------------------------------------------


def _schedule_next_sync(ctx: ServiceContext, job: JobRow, info: CloudJobInfo | None = None) -> None:
    """Set when a job's run is read next.

    An unfinished job: after the reconcile interval (sooner if its budget cap is reached before),
    or at once while a cancel is pending (a budget cap asked for one). A finished job: not again,
    unless its provider's final cost is not in yet and its run is still ending (``info`` not
    final), for up to :data:`FINAL_COST_WINDOW`.
    A job whose provider pushes its state (``ProviderCapabilities.pushes_state``) is read only to
    carry out a pending cancel.
    """
    now = ctx.clock.now()
    later = now + timedelta(seconds=ctx.settings.reconcile_interval_seconds)
    if not JobStatus(job.status).is_terminal:
        if job.cancel_requested_at is not None:
            job.next_sync_at = now
        else:
            provider = _provider_for(ctx, job)
            if provider is not None and provider.capabilities.pushes_state:
                job.next_sync_at = None
            else:
                # A budget cap reached before the usual interval is checked when it is reached.
                job.next_sync_at = min(later, costs.budget_reached_at(job, now) or later)
        return
    run_ending = info is not None and not info.status.as_job_status().is_terminal
    recent = job.finished_at is not None and now - job.finished_at < FINAL_COST_WINDOW
    job.next_sync_at = later if run_ending and recent and not job.cost_final else None


def _provider_for(ctx: ServiceContext, job: JobRow) -> CloudTrainerService | None:
    return ctx.providers.find(job.provider)


# --- dispatch -----------------------------------------------------------------------------------


async def dispatch_job(ctx: ServiceContext, job_id: str, token: str) -> None:
    """Start a leased queued job at its provider; see the module docstring for the guarantees.

    Jobs whose local datasets the provider uploads go through ``uploading`` (packaging, then the
    provider's upload) before ``starting``.
    """
    now = ctx.clock.now()

    def record_intent(
        session: AsyncSession, job: JobRow | None
    ) -> tuple[CloudTrainerService, RunRequest, bool, JobStorageCredentials] | None:
        if job is None or not holds_lease(job, token) or job.status != JobStatus.QUEUED.value:
            return None
        provider = _provider_for(ctx, job)
        if provider is None:
            transition_job(
                session, job, JobStatus.FAILED, cause="provider missing", now=now,
                detail=f"The provider {job.provider!r} is not configured on this server.",
            )  # fmt: skip
            return None
        uploading = uploads_for(provider, job.dataloader_config)
        first_dispatch = job.dispatch_started_at is None
        job.dispatch_attempts += 1
        job.dispatch_started_at = now
        transition_job(
            session, job, JobStatus.UPLOADING if uploading else JobStatus.STARTING, cause="dispatched", now=now,
            detail=f"attempt {job.dispatch_attempts} at {job.provider}",
        )  # fmt: skip
        # The job's own key for the built-in S3 endpoint, and where it delivers (services.publishing).
        storage = add_job_storage_credentials(ctx, session, job, now=now)
        if first_dispatch:
            publishing.note_delivery(session, job, now=now)
        return provider, run_request(job), uploading, storage

    intent = await ctx.job_updates.apply(job_id, record_intent)
    if intent is None:
        return
    provider, request, uploading, storage = intent
    completed = await _complete_request(ctx, provider, job_id, token, request, storage)
    if completed is None:
        return
    request = completed
    prepared: PreparedUpload | None = None
    try:
        async with lease_heartbeat(ctx, job_id, token):
            if uploading:
                prepared = await prepare_archive(
                    ctx, provider, job_id, request.dataloader_config, request.report_progress
                )
                await _record_package(ctx, job_id, token, prepared)
                request = replace(request, dataloader_config=prepared.dataloader, dataset_archive=prepared.archive)
            info = await timed(ctx, provider.provider_name, "run_job", provider.run_job(request))
    except PackagingError as exc:
        await _fail_if_leased(ctx, job_id, token, exc.message, cause="packaging failed")
        return
    except (ProviderRejectedError, ProviderAuthError) as exc:
        await _fail_if_leased(ctx, job_id, token, exc.message, cause="provider refused the run")
        return
    except Exception as exc:
        if isinstance(exc, ProviderUnavailableError) and exc.context.get("create_outcome") == NOTHING_CREATED:
            await _requeue_uncounted(ctx, job_id, token, exc.message)
            return
        # The run may or may not exist: leave the job for recover_job to reconcile by reference.
        log.warning("starting job %s at %s had no clear outcome: %s", job_id, provider.provider_name, exc)
        await release_lease(ctx, job_id, token)
        return
    finally:
        if prepared is not None:
            discard_archive(prepared.archive)
    await attach_run(ctx, job_id, token, info, cause="provider accepted the run")


async def _complete_request(
    ctx: ServiceContext,
    provider: CloudTrainerService,
    job_id: str,
    token: str,
    request: RunRequest,
    storage: JobStorageCredentials,
) -> RunRequest | None:
    """Add what the run needs beyond the job row: where it delivers, progress reports, default
    hardware and the webhook URL. None if the job failed because its publishing settings are unreadable."""
    try:
        delivery = publishing.delivery_target(
            ctx, provider, job_id, request.publishing, credentials=storage, base_url=await public_url(ctx)
        )
    except ConfigurationError as exc:
        await _fail_if_leased(ctx, job_id, token, exc.message, cause="publishing settings unreadable")
        return None
    hardware = request.hardware
    if hardware is None:
        hardware = (await get_provider_settings(ctx, provider.provider_name)).default_hardware
    webhook_url = request.webhook_url
    base_url = await public_url(ctx) if provider.capabilities.webhooks else None
    if base_url:
        webhook_url = f"{base_url}/api/webhooks/{provider.provider_name}?job_id={job_id}"
    # One copy of the request (``replace`` costs a few microseconds a call).
    return replace(
        request,
        delivery=delivery,
        report_progress=progress_reporter(ctx, job_id, token),
        hardware=hardware,
        webhook_url=webhook_url,
    )


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

    def record(stage: str, done: int, total: int) -> JobChange[None]:
        def change(session: AsyncSession, job: JobRow | None) -> None:
            if job is not None and holds_lease(job, token) and not JobStatus(job.status).is_terminal:
                job.progress = JobProgress(stage=stage, step=done, total_steps=total).to_dict()
                job.updated_at = ctx.clock.now()

        return change

    async def report(stage: str, done: int, total: int) -> None:
        nonlocal last_write
        moment = time.monotonic()
        if moment - last_write < 0.5 and done < total:
            return
        last_write = moment
        await ctx.job_updates.apply(job_id, record(stage, done, total))

    return report


async def _record_package(ctx: ServiceContext, job_id: str, token: str, prepared: PreparedUpload) -> None:
    def change(session: AsyncSession, job: JobRow | None) -> None:
        if job is not None and holds_lease(job, token):
            job.upload_summary = prepared.summary.model_dump(mode="json")
            job.package_sha256 = prepared.archive.sha256

    await ctx.job_updates.apply(job_id, change)


async def _requeue_uncounted(ctx: ServiceContext, job_id: str, token: str, message: str) -> None:
    """Put a leased job back in the queue after its provider turned the run away before creating
    it (``NOTHING_CREATED``): the attempt is not counted, so a rate limit never fails a job."""

    def change(session: AsyncSession, job: JobRow | None) -> None:
        if job is None or not holds_lease(job, token) or job.status not in _STARTING_STATES:
            return
        job.dispatch_attempts = max(0, job.dispatch_attempts - 1)
        transition_job(session, job, JobStatus.QUEUED, cause="requeued", now=ctx.clock.now(), detail=message)
        job.lease_owner = job.lease_token = None
        job.lease_expires_at = None

    await ctx.job_updates.apply(job_id, change)


_STARTING_STATES = (JobStatus.UPLOADING.value, JobStatus.STARTING.value)


async def _fail_if_leased(ctx: ServiceContext, job_id: str, token: str, message: str, *, cause: str) -> None:
    def change(session: AsyncSession, job: JobRow | None) -> None:
        if job is not None and holds_lease(job, token) and not JobStatus(job.status).is_terminal:
            job.error = message
            transition_job(session, job, JobStatus.FAILED, cause=cause, now=ctx.clock.now(), detail=message)

    await ctx.job_updates.apply(job_id, change)


async def attach_run(ctx: ServiceContext, job_id: str, token: str, info: CloudJobInfo, *, cause: str) -> None:
    """Record the provider run made for a leased job and apply its state.

    A job that ended while its run was being created (a user cancelled it) keeps the run's id,
    even though ending it released the lease, and the run is stopped at once: no run outlives
    its job. Otherwise a result from a lost lease is dropped; whoever holds the job now finds
    the run by reference.
    """

    def change(session: AsyncSession, job: JobRow | None) -> str | None:
        """Return the provider's name if the run must be stopped."""
        if job is None:
            return None
        if JobStatus(job.status).is_terminal:
            if job.provider_job_id is not None:
                return None
            job.provider_job_id = info.provider_job_id
            job.next_sync_at = ctx.clock.now()
            return None if info.status.as_job_status().is_terminal else job.provider
        if not holds_lease(job, token):
            log.warning("dropping run %s for job %s: the lease was lost", info.provider_job_id, job_id)
            return None
        job.provider_job_id = info.provider_job_id
        apply_observation(ctx, session, job, info, cause)
        _schedule_next_sync(ctx, job, info)
        job.lease_owner = job.lease_token = None
        job.lease_expires_at = None
        return None

    stop_at = await ctx.job_updates.apply(job_id, change)
    if stop_at is not None:
        await cancel_at_provider(ctx, job_id, stop_at, info.provider_job_id)


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
            info = await timed(
                ctx, provider.provider_name, "find_job_by_reference", provider.find_job_by_reference(job_id, request)
            )
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


@dataclass(frozen=True)
class SyncTarget:
    """What a sync needs to know of a leased job with a provider run."""

    job_id: str
    token: str
    provider_name: str
    provider_job_id: str
    cancel_pending: bool


async def load_sync_targets(ctx: ServiceContext, claims: list[tuple[str, str]]) -> list[SyncTarget]:
    """Read, in one query, the claimed jobs that still hold their lease and have a run."""
    if not claims:
        return []
    tokens = dict(claims)
    query = select(
        JobRow.id, JobRow.lease_token, JobRow.provider, JobRow.provider_job_id, JobRow.status,
        JobRow.cancel_requested_at,
    ).where(JobRow.id.in_(list(tokens)))  # fmt: skip
    async with ctx.db.read() as session:
        rows = (await session.execute(query)).all()
    return [
        SyncTarget(
            job_id=row.id,
            token=row.lease_token,
            provider_name=row.provider,
            provider_job_id=row.provider_job_id,
            cancel_pending=row.cancel_requested_at is not None and not JobStatus(row.status).is_terminal,
        )
        for row in rows
        if row.provider_job_id is not None and row.lease_token is not None and tokens[row.id] == row.lease_token
    ]


async def sync_job(ctx: ServiceContext, job_id: str, token: str) -> None:
    """Read a leased job's run (state, progress, cost, logs) and apply it.

    A job whose cancel was requested but not yet confirmed is cancelled at its provider here.

    Raises:
        ProviderError: the provider could not be read; the lease is released first.
    """
    for target in await load_sync_targets(ctx, [(job_id, token)]):
        await sync_target(ctx, target)


async def sync_target(ctx: ServiceContext, target: SyncTarget) -> None:
    """Sync one job read by :func:`load_sync_targets`; see :func:`sync_job`.

    Raises:
        ProviderError: the provider could not be read; the lease is released first.
    """
    job_id, token, provider_job_id = target.job_id, target.token, target.provider_job_id
    cancel_pending = target.cancel_pending
    provider = ctx.providers.find(target.provider_name)
    if provider is None:
        await release_lease(ctx, job_id, token)
        return
    name = provider.provider_name
    try:
        async with lease_heartbeat(ctx, job_id, token):
            if cancel_pending:
                await timed(ctx, name, "cancel_job", provider.cancel_job(provider_job_id))
            info = await timed(ctx, name, "get_job_status", provider.get_job_status(provider_job_id))
            read_logs = provider.supports_live_logs or info.status.as_job_status().is_terminal
            logs = await timed(ctx, name, "get_job_logs", provider.get_job_logs(provider_job_id)) if read_logs else None
    except ProviderError:
        await _postpone_sync(ctx, job_id, token)
        raise

    def change(session: AsyncSession, job: JobRow | None) -> None:
        if job is None or not holds_lease(job, token):
            return
        now = ctx.clock.now()
        if logs is not None and (chunk := append_log(job, logs, now)) is not None:
            session.add(chunk)
        if cancel_pending and not JobStatus(job.status).is_terminal:
            _cancel_confirmed(session, job, now)
        if JobStatus(job.status).is_terminal:
            # A finished job's cost still follows its run: the provider's final figure replaces
            # what was accrued (and is not undone by an older report afterwards).
            apply_cost(ctx, job, info, now)
        else:
            apply_observation(ctx, session, job, info, cause=f"provider reported {info.status.value}")
        _schedule_next_sync(ctx, job, info)
        job.lease_owner = job.lease_token = None
        job.lease_expires_at = None

    await ctx.job_updates.apply(job_id, change)


def _cancel_confirmed(session: AsyncSession, job: JobRow, now: datetime) -> None:
    """Record a cancel the provider carried out: the user's, or the job's budget cap's."""
    if costs.over_budget(job):
        message = costs.budget_message(job)
        job.error = job.error or message
        transition_job(session, job, JobStatus.CANCELLED, cause=costs.BUDGET_CAUSE, now=now, detail=message)
    else:
        transition_job(session, job, JobStatus.CANCELLED, cause="cancelled by user", now=now)


async def _postpone_sync(ctx: ServiceContext, job_id: str, token: str) -> None:
    def change(session: AsyncSession, job: JobRow | None) -> None:
        if job is not None and holds_lease(job, token):
            job.next_sync_at = ctx.clock.now() + timedelta(seconds=ctx.settings.reconcile_interval_seconds)
            job.lease_owner = job.lease_token = None
            job.lease_expires_at = None

    await ctx.job_updates.apply(job_id, change)


# --- cancel -------------------------------------------------------------------------------------


async def cancel_at_provider(ctx: ServiceContext, job_id: str, provider_name: str, provider_job_id: str) -> JobStatus:
    """Ask the provider to stop a job's run and mark the job cancelled once it agrees.

    Returns the job's status afterwards. If the provider cannot be reached the job keeps its
    cancel request and the scheduler tries again on its next sync.
    """
    provider = ctx.providers.find(provider_name)
    if provider is not None:
        try:
            await timed(ctx, provider_name, "cancel_job", provider.cancel_job(provider_job_id))
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
