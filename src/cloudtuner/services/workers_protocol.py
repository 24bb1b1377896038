"""The worker protocol: what ``cloudtuner worker`` asks of the server, and the reaper of lost workers.

A job dispatched to a worker provider (``worker``) waits in ``starting`` with no assignment
(claimable as soon as dispatch has recorded its intent, even before the run id is attached). A
worker claims it by inserting its ``worker_assignments`` row, in a transaction that locks the
job first: the row's primary key (and, on PostgreSQL, the row lock) make sure one job is handed
to one worker, whichever server process the worker asked. Heartbeats extend the assignment's
lease; every report carries the lease token and a report whose token no longer matches is
ignored. :func:`reap_lost_assignments` requeues the job of a worker whose lease ran out (up to
``worker_max_attempts`` dispatches), then fails it with the reason. Nothing here lives only in
one process's memory except the wake-up of local long-polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from cloudtuner.core.errors import WorkerLeaseLostError
from cloudtuner.core.states import JobStatus
from cloudtuner.core.trainer_logs import parse_progress
from cloudtuner.db.tables import JobLogRow, JobRow, WorkerAssignmentRow, WorkerRow
from cloudtuner.providers.base import CloudJobInfo, CloudJobStatus
from cloudtuner.schemas.workers import (
    AckResponse,
    ClaimedJob,
    ClaimResponse,
    GpuInfo,
    HeartbeatResponse,
    RegisterWorkerRequest,
    RegisterWorkerResponse,
    ResultRequest,
    WorkerRequirements,
    WorkerStatus,
    WorkerStorage,
)
from cloudtuner.services.context import ServiceContext
from cloudtuner.services.storage_credentials import issue_job_storage_credentials, storage_endpoint_url
from cloudtuner.services.transitions import lock_job, transition_job
from cloudtuner.services.uploads import ScannedUpload, local_datasets, prepare_stream
from cloudtuner.services.workers import hash_token, worker_for_token

log = logging.getLogger(__name__)

WORKER_PROVIDERS = ("worker",)
"""Providers whose jobs remote workers claim."""
PROVIDER_LABEL = "cloudtuner.provider"
"""A worker label naming the provider whose jobs it claims (``local`` for this server's own workers)."""


def providers_for(labels: dict[str, str]) -> tuple[str, ...]:
    """Return the providers whose jobs a worker with ``labels`` claims."""
    named = labels.get(PROVIDER_LABEL)
    return (named,) if named else WORKER_PROVIDERS


class WorkAvailable:
    """Wakes this process's long-polling claims when a job becomes available (other processes poll).

    ``claiming`` lets one claim at a time in this process look for a job and take it: claims
    that ran at once would all read the same candidates and race for the first, each loser
    paying a write transaction. Claims from other processes still race, and lose cleanly.
    """

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self.claiming = asyncio.Lock()

    def notify(self) -> None:
        """Wake every waiting claim."""
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, seconds: float) -> None:
        """Wait until notified or ``seconds`` pass."""
        event = self._event
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout=seconds)


def _heartbeat_seconds(ctx: ServiceContext) -> float:
    return max(0.2, ctx.settings.worker_lease_seconds / 4)


async def register_worker(ctx: ServiceContext, token: str, request: RegisterWorkerRequest) -> RegisterWorkerResponse:
    """Record a worker's GPUs, labels and host; give up any job it held before it restarted.

    Raises:
        InvalidWorkerTokenError: the token is not valid.
    """
    now = ctx.clock.now()
    async with ctx.db.transaction() as session:
        worker = await worker_for_token(session, token)
        worker.gpus = [gpu.model_dump() for gpu in request.gpus]
        worker.labels = {**(worker.labels or {}), **request.labels}
        worker.hostname = request.hostname
        worker.persistent = request.persistent
        worker.registered_at = worker.last_heartbeat_at = now
        worker.current_job_id = None
        worker.state = WorkerStatus.IDLE.value
        held = (
            await session.scalars(select(WorkerAssignmentRow).where(WorkerAssignmentRow.worker_id == worker.id))
        ).all()
        for assignment in held:
            # A restarted worker has lost its trainer: its jobs go back to the queue at once.
            assignment.lease_expires_at = now - timedelta(seconds=1)
        worker_id, name = worker.id, worker.name
    abandoned = [a.job_id for a in held]
    if abandoned:
        await reap_lost_assignments(ctx)
    return RegisterWorkerResponse(
        worker_id=worker_id,
        name=name,
        heartbeat_seconds=_heartbeat_seconds(ctx),
        lease_seconds=ctx.settings.worker_lease_seconds,
        abandoned_job_ids=abandoned,
    )


@dataclass(frozen=True)
class _Worker:
    id: str
    labels: dict[str, str]
    gpus: list[GpuInfo]
    draining: bool
    heartbeat_fresh: bool
    """True if its last heartbeat is under a second old (not worth writing again)."""


async def claim_job(
    ctx: ServiceContext,
    token: str,
    wait_seconds: float,
    work: WorkAvailable,
    *,
    base_url: str,
) -> ClaimResponse:
    """Hand the worker the next job it can run, waiting up to ``wait_seconds`` for one.

    Jobs are taken highest priority first, then oldest, among those whose requirements the
    worker meets, at the providers its labels name (:func:`providers_for`). A draining worker
    gets ``drain: true`` and no job. ``base_url`` is where the worker reaches this server (its
    outputs go to the S3 endpoint there). Each look costs one read; taking a job, one write
    transaction, which also records the worker's heartbeat.

    Raises:
        InvalidWorkerTokenError: the token is not valid.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + min(wait_seconds, ctx.settings.worker_poll_seconds)
    while True:
        async with work.claiming:
            worker, candidates = await _look(ctx, token)
            if worker.draining:
                job = None
            else:
                job = await _take_first(ctx, worker, candidates, base_url)
        if job is not None:
            return ClaimResponse(job=job)
        if not worker.heartbeat_fresh:
            async with ctx.db.transaction() as session:
                await session.execute(
                    update(WorkerRow).where(WorkerRow.id == worker.id).values(last_heartbeat_at=ctx.clock.now())
                )
        if worker.draining:
            return ClaimResponse(job=None, drain=True)
        remaining = deadline - loop.time()
        if remaining <= 0:
            return ClaimResponse(job=None)
        # Woken at once by a dispatch in this process; jobs dispatched by another process are
        # seen on the next poll.
        await work.wait(min(remaining, 0.25))


_REQUIREMENTS: OrderedDict[str, WorkerRequirements] = OrderedDict()
"""Requirements by job id (a job's config never changes), so that claims do not parse configs again."""
_REQUIREMENTS_MAX = 10_000
_READ_AHEAD = 500
"""How many waiting jobs' requirements a claim reads when one of its candidates is not cached."""


async def _look(ctx: ServiceContext, token: str) -> tuple[_Worker, list[str]]:
    """Read the worker of ``token`` and the ids of the jobs it could take, in the order to try them.

    Raises:
        InvalidWorkerTokenError: the token is not valid.
    """
    now = ctx.clock.now()
    async with ctx.db.read() as session:
        row = await worker_for_token(session, token)
        worker = _Worker(
            row.id,
            dict(row.labels or {}),
            [GpuInfo.model_validate(g) for g in row.gpus or []],
            row.draining,
            row.last_heartbeat_at is not None and now - row.last_heartbeat_at < timedelta(seconds=1),
        )
        if worker.draining:
            return worker, []
        waiting = (
            select(JobRow.id, JobRow.priority)
            .outerjoin(WorkerAssignmentRow, WorkerAssignmentRow.job_id == JobRow.id)
            .where(
                JobRow.status == JobStatus.STARTING.value,
                JobRow.provider.in_(providers_for(worker.labels)),
                JobRow.cancel_requested_at.is_(None),
                WorkerAssignmentRow.job_id.is_(None),
            )
            .order_by(JobRow.priority.desc(), JobRow.id)
            .limit(50)
        )
        rows = [(job_id, priority) for job_id, priority in (await session.execute(waiting)).all()]
        if any(job_id not in _REQUIREMENTS for job_id, _ in rows):
            # Read ahead: the next claims find the requirements of the jobs behind these cached.
            ahead = waiting.with_only_columns(JobRow.id, JobRow.config).limit(_READ_AHEAD)
            for job_id, config in (await session.execute(ahead)).all():
                if job_id not in _REQUIREMENTS:
                    _REQUIREMENTS[job_id] = WorkerRequirements.from_config(config or {})
            while len(_REQUIREMENTS) > _REQUIREMENTS_MAX:
                _REQUIREMENTS.popitem(last=False)
    matching = [
        (job_id, priority)
        for job_id, priority in rows
        if (needs := _REQUIREMENTS.get(job_id)) is not None and needs.matches(worker.labels, worker.gpus)
    ]
    return worker, _spread(matching)


async def _take_first(ctx: ServiceContext, worker: _Worker, candidates: list[str], base_url: str) -> ClaimedJob | None:
    providers = providers_for(worker.labels)
    for job_id in candidates:
        try:
            claimed = await _take(ctx, worker, job_id, providers, base_url)
        except IntegrityError:
            continue  # a worker served by another process took it first
        if claimed is not None:
            return claimed
    return None


def _spread(candidates: list[tuple[str, int]], window: int = 16) -> list[str]:
    """Return the job ids to try, in queue order, except that the first few of the top priority
    are rotated by a random offset: workers of several processes polling at once then try
    different jobs first instead of all racing for the oldest (which costs each loser a write
    transaction)."""
    if not candidates:
        return []
    top = candidates[0][1]
    head = [job_id for job_id, priority in candidates[:window] if priority == top]
    offset = secrets.randbelow(len(head))
    ordered = head[offset:] + head[:offset]
    return ordered + [job_id for job_id, _ in candidates[len(head) :]]


async def _take(
    ctx: ServiceContext, worker: _Worker, job_id: str, providers: tuple[str, ...], base_url: str
) -> ClaimedJob | None:
    """Assign ``job_id`` to ``worker`` if it is still waiting for one; None if it is not.

    Raises:
        IntegrityError: another process assigned it meanwhile (the primary key refused ours).
    """
    now = ctx.clock.now()
    lease_token = secrets.token_hex(16)
    async with ctx.db.transaction() as session:
        job = await lock_job(session, job_id)
        if (
            job.status != JobStatus.STARTING.value
            or job.provider not in providers
            or job.cancel_requested_at is not None
        ):
            return None
        session.add(
            WorkerAssignmentRow(
                job_id=job_id,
                worker_id=worker.id,
                lease_token=lease_token,
                lease_expires_at=now + timedelta(seconds=ctx.settings.worker_lease_seconds),
                attempt=job.dispatch_attempts,
                created_at=now,
            )
        )
        await session.flush()
        await session.execute(
            update(WorkerRow)
            .where(WorkerRow.id == worker.id)
            .values(current_job_id=job_id, state=WorkerStatus.BUSY.value, last_heartbeat_at=now)
        )
        credentials = await issue_job_storage_credentials(ctx, session, job_id, now=now)
        return ClaimedJob(
            job_id=job_id,
            lease_token=lease_token,
            config=dict(job.config or {}),
            dataloader_config=list(job.dataloader_config or []),
            has_datasets=bool(local_datasets(job.dataloader_config or [])),
            storage=WorkerStorage(
                endpoint_url=storage_endpoint_url(base_url),
                bucket=credentials.bucket,
                prefix=credentials.prefix,
                access_key_id=credentials.access_key_id,
                secret_access_key=credentials.secret_access_key,
            ),
            heartbeat_seconds=_heartbeat_seconds(ctx),
        )


async def _held(session: AsyncSession, worker_id: str, job_id: str, lease_token: str) -> WorkerAssignmentRow | None:
    assignment = await session.get(WorkerAssignmentRow, job_id, with_for_update=True, populate_existing=True)
    if assignment is None or assignment.worker_id != worker_id or assignment.lease_token != lease_token:
        return None
    return assignment


def _stop_reason(job: JobRow) -> str | None:
    if JobStatus(job.status).is_terminal:
        return f"the job is {job.status}"
    if job.cancel_requested_at is not None:
        return "the job was cancelled"
    return None


async def heartbeat(
    ctx: ServiceContext, token: str, job_id: str, lease_token: str, *, running: bool
) -> HeartbeatResponse:
    """Extend the worker's lease on a job; say whether to go on (cancel and lost leases say no).

    ``running`` moves a ``starting`` job to ``running``.

    Raises:
        InvalidWorkerTokenError: the token is not valid.
    """
    now = ctx.clock.now()
    async with ctx.db.transaction() as session:
        worker = await worker_for_token(session, token)
        worker.last_heartbeat_at = now
        job = await lock_job(session, job_id)
        assignment = await _held(session, worker.id, job_id, lease_token)
        if assignment is None:
            return HeartbeatResponse(keep_running=False, reason="the lease on this job was lost", drain=worker.draining)
        reason = _stop_reason(job)
        if reason is not None:
            return HeartbeatResponse(keep_running=False, reason=reason, drain=worker.draining)
        assignment.lease_expires_at = now + timedelta(seconds=ctx.settings.worker_lease_seconds)
        if running and job.status == JobStatus.STARTING.value:
            transition_job(session, job, JobStatus.RUNNING, cause="worker started the trainer", now=now)
        return HeartbeatResponse(keep_running=True, drain=worker.draining)


async def append_logs(ctx: ServiceContext, token: str, job_id: str, lease_token: str, text: str) -> AckResponse:
    """Append trainer log text to the job's log and take its progress from it.

    A report from a worker that lost its lease is ignored (``accepted: false``).

    Raises:
        InvalidWorkerTokenError: the token is not valid.
    """
    now = ctx.clock.now()
    async with ctx.db.transaction() as session:
        worker = await worker_for_token(session, token)
        job = await lock_job(session, job_id)
        if await _held(session, worker.id, job_id, lease_token) is None:
            return AckResponse(accepted=False, keep_running=False)
        if text:
            session.add(JobLogRow(job_id=job.id, start_offset=job.log_length, content=text, created_at=now))
            job.log_length += len(text)
            progress = parse_progress(text)
            if progress is not None and not JobStatus(job.status).is_terminal:
                job.progress = progress.to_dict()
            job.updated_at = now
        return AckResponse(accepted=True, keep_running=_stop_reason(job) is None)


async def report_result(ctx: ServiceContext, token: str, job_id: str, request: ResultRequest) -> AckResponse:
    """Apply how a job ended on the worker and free the worker.

    Ignored (``accepted: false``) if the worker's lease was lost; a job already ended (cancelled)
    keeps its state.

    Raises:
        InvalidWorkerTokenError: the token is not valid.
    """
    now = ctx.clock.now()
    async with ctx.db.transaction() as session:
        job = await lock_job(session, job_id)  # the job first, then its assignment: the reaper's order
        tokens_worker = select(WorkerRow.id).where(
            WorkerRow.token_sha256 == hash_token(token), WorkerRow.revoked_at.is_(None)
        )
        ended = await session.execute(
            delete(WorkerAssignmentRow)
            .where(
                WorkerAssignmentRow.job_id == job_id,
                WorkerAssignmentRow.lease_token == request.lease_token,
                WorkerAssignmentRow.worker_id.in_(tokens_worker.scalar_subquery()),
            )
            .returning(WorkerAssignmentRow.worker_id)
        )
        worker_id = ended.scalar()
        if worker_id is None:
            worker = await worker_for_token(session, token)  # raises for a bad token
            log.warning("ignoring a late result for job %s from worker %s", job_id, worker.name)
            return AckResponse(accepted=False, keep_running=False)
        await session.execute(
            update(WorkerRow)
            .where(WorkerRow.id == worker_id)
            .values(current_job_id=None, state=WorkerStatus.IDLE.value, last_heartbeat_at=now)
        )
        if not JobStatus(job.status).is_terminal:
            if request.status == "completed":
                transition_job(session, job, JobStatus.COMPLETED, cause="worker reported completed", now=now)
            elif request.status == "cancelled" and job.cancel_requested_at is not None:
                transition_job(session, job, JobStatus.CANCELLED, cause="cancelled by user", now=now)
            else:
                message = request.error or f"The trainer exited with code {request.exit_code}."
                job.error = message
                transition_job(session, job, JobStatus.FAILED, cause="worker reported failed", now=now, detail=message)
        return AckResponse(accepted=True, keep_running=False)


async def require_assignment(ctx: ServiceContext, token: str, job_id: str, lease_token: str) -> list[dict[str, Any]]:
    """Return the job's dataloader config if the worker holds the job.

    Raises:
        InvalidWorkerTokenError: the token is not valid.
        WorkerLeaseLostError: the worker does not hold the job.
    """
    async with ctx.db.read() as session:
        worker = await worker_for_token(session, token)
        assignment = await session.get(WorkerAssignmentRow, job_id)
        if assignment is None or assignment.worker_id != worker.id or assignment.lease_token != lease_token:
            raise WorkerLeaseLostError()
        job = await session.get(JobRow, job_id)
        if job is None:
            raise WorkerLeaseLostError()
        return list(job.dataloader_config or [])


async def reap_lost_assignments(ctx: ServiceContext, limit: int = 100) -> int:
    """Requeue (or fail, after ``worker_max_attempts``) the jobs of workers whose lease ran out.

    Returns how many assignments were ended. Safe to run in several processes at once: each
    assignment is ended under its job's lock, once.
    """
    now = ctx.clock.now()
    query = (
        select(WorkerAssignmentRow.job_id, WorkerAssignmentRow.lease_token)
        .where(WorkerAssignmentRow.lease_expires_at < now)
        .limit(limit)
    )
    async with ctx.db.read() as session:
        expired = (await session.execute(query)).all()
    ended = 0
    for job_id, lease_token in expired:
        async with ctx.db.transaction() as session:
            job = await session.get(JobRow, job_id, with_for_update=True, populate_existing=True)
            assignment = await session.get(WorkerAssignmentRow, job_id, with_for_update=True, populate_existing=True)
            if job is None or assignment is None or assignment.lease_token != lease_token:
                continue
            if assignment.lease_expires_at >= now:
                continue
            worker = await session.get(WorkerRow, assignment.worker_id)
            name = worker.name if worker is not None else assignment.worker_id
            if worker is not None and worker.current_job_id == job_id:
                worker.current_job_id = None
            await session.delete(assignment)
            ended += 1
            if JobStatus(job.status).is_terminal:
                continue
            reason = f"worker {name} stopped heartbeating"
            if job.cancel_requested_at is not None:
                transition_job(session, job, JobStatus.CANCELLED, cause="cancelled by user", now=now, detail=reason)
            elif job.dispatch_attempts >= ctx.settings.worker_max_attempts:
                message = f"The job was lost by {job.dispatch_attempts} workers; the last: {reason}."
                job.error = message
                transition_job(session, job, JobStatus.FAILED, cause="worker lost", now=now, detail=message)
            else:
                transition_job(session, job, JobStatus.QUEUED, cause="requeued", now=now, detail=reason)
                job.next_sync_at = None
    if ended:
        ctx.wake_dispatcher()
    return ended


class WorkerRuns:
    """The job store's view of worker runs, attached to each worker provider (``RunStateSource``)."""

    def __init__(self, ctx: ServiceContext, work: WorkAvailable) -> None:
        self._ctx = ctx
        self.work = work

    def notify(self) -> None:
        """Wake this process's waiting claims."""
        self.work.notify()

    async def aclose(self) -> None:
        """Nothing to release."""

    async def run_info(self, provider_job_id: str, job_id: str) -> CloudJobInfo:
        """Return the run as its worker last reported it (it writes the job row itself)."""
        async with self._ctx.db.read() as session:
            job = await session.get(JobRow, job_id)
        if job is None:
            return CloudJobInfo(provider_job_id, CloudJobStatus.FAILED, reference=job_id, error="The job is gone.")
        status = JobStatus(job.status)
        if status in (JobStatus.RUNNING, JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED):
            run_status = CloudJobStatus(status.value)
        else:
            run_status = CloudJobStatus.QUEUED
        return CloudJobInfo(provider_job_id, run_status, reference=job_id, error=job.error)


async def package_datasets(ctx: ServiceContext, token: str, job_id: str, lease_token: str) -> ScannedUpload:
    """Scan the local datasets of a job the worker holds, to be streamed as one zip
    (``uploads.archive_chunks``).

    The dataloader config returned points at ``/datasets``, the archive's extract root.

    Raises:
        InvalidWorkerTokenError: the token is not valid.
        WorkerLeaseLostError: the worker does not hold the job.
        PackagingError: a dataset cannot be read.
    """
    dataloader = await require_assignment(ctx, token, job_id, lease_token)
    async with ctx.db.read() as session:
        job = await session.get(JobRow, job_id)
        provider_name = job.provider if job is not None else "worker"
    provider = ctx.providers.get(provider_name)
    return await prepare_stream(provider, dataloader)
