"""Self-hosted workers, as the admin manages them: create, list, rotate, revoke, drain, delete.

A worker's token is ``ctw_`` plus 32 random bytes; only its sha256 is stored, and the token is
returned once, by :func:`create_worker` and :func:`rotate_worker`. The worker protocol (claims,
heartbeats, reports) lives in ``services.workers_protocol``.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from cloudtuner.core.errors import InvalidWorkerTokenError, WorkerNameTakenError, WorkerNotFoundError
from cloudtuner.core.ids import new_sortable_id
from cloudtuner.db.tables import WorkerAssignmentRow, WorkerRow
from cloudtuner.schemas.workers import (
    CreateWorkerRequest,
    CreateWorkerResponse,
    GpuInfo,
    WorkerListResponse,
    WorkerStatus,
    WorkerView,
    worker_command,
)
from cloudtuner.services.context import ServiceContext

TOKEN_PREFIX = "ctw_"  # noqa: S105 - a prefix, not a secret


def hash_token(token: str) -> str:
    """Return the stored form of a worker token."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """Return a fresh worker token."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def worker_status(row: WorkerRow, now: datetime, lease_seconds: float) -> WorkerStatus:
    """Return what a worker is doing, as the list shows it."""
    if row.revoked_at is not None:
        return WorkerStatus.REVOKED
    if row.last_heartbeat_at is None:
        return WorkerStatus.CONNECTING
    if now - row.last_heartbeat_at > timedelta(seconds=lease_seconds):
        return WorkerStatus.OFFLINE
    if row.draining:
        return WorkerStatus.DRAINING
    return WorkerStatus.BUSY if row.current_job_id else WorkerStatus.IDLE


def view(ctx: ServiceContext, row: WorkerRow, now: datetime | None = None) -> WorkerView:
    """Return a worker as the API shows it."""
    now = now or ctx.clock.now()
    return WorkerView(
        worker_id=row.id,
        name=row.name,
        status=worker_status(row, now, ctx.settings.worker_lease_seconds),
        labels=dict(row.labels or {}),
        gpus=[GpuInfo.model_validate(gpu) for gpu in row.gpus or []],
        hostname=row.hostname,
        persistent=row.persistent,
        current_job_id=row.current_job_id,
        last_heartbeat_at=row.last_heartbeat_at,
        created_at=row.created_at,
        registered_at=row.registered_at,
    )


def _created(ctx: ServiceContext, row: WorkerRow, token: str, base_url: str) -> CreateWorkerResponse:
    return CreateWorkerResponse(
        worker_id=row.id,
        token=token,
        command=worker_command(base_url, token),
        worker=view(ctx, row),
    )


async def create_worker(
    ctx: ServiceContext, request: CreateWorkerRequest, *, base_url: str, created_by: str | None
) -> CreateWorkerResponse:
    """Create a worker and return it with its token (shown this once) and its command.

    Raises:
        WorkerNameTakenError: another worker has that name.
    """
    now = ctx.clock.now()
    token = new_token()
    row = WorkerRow(
        id=new_sortable_id(),
        name=request.name,
        token_sha256=hash_token(token),
        labels=dict(request.labels),
        gpus=[],
        hostname=None,
        state=WorkerStatus.CONNECTING.value,
        draining=False,
        persistent=False,
        current_job_id=None,
        created_by=created_by,
        created_at=now,
        registered_at=None,
        last_heartbeat_at=None,
        revoked_at=None,
    )
    try:
        async with ctx.db.transaction() as session:
            taken = await session.scalar(select(WorkerRow.id).where(WorkerRow.name == request.name))
            if taken is not None:
                raise WorkerNameTakenError(f"A worker named {request.name!r} already exists.")
            session.add(row)
    except IntegrityError as exc:
        raise WorkerNameTakenError(f"A worker named {request.name!r} already exists.") from exc
    return _created(ctx, row, token, base_url)


async def _find(session: AsyncSession, worker: str) -> WorkerRow:
    row = await session.get(WorkerRow, worker)
    if row is None:
        row = await session.scalar(select(WorkerRow).where(WorkerRow.name == worker))
    if row is None:
        raise WorkerNotFoundError(f"No worker has the id or name {worker!r}.")
    return row


async def list_workers(ctx: ServiceContext) -> WorkerListResponse:
    """Return every worker, oldest first."""
    async with ctx.db.read() as session:
        rows = (await session.scalars(select(WorkerRow).order_by(WorkerRow.id))).all()
        now = ctx.clock.now()
        return WorkerListResponse(workers=[view(ctx, row, now) for row in rows])


async def get_worker(ctx: ServiceContext, worker: str) -> WorkerView:
    """Return one worker by id or name.

    Raises:
        WorkerNotFoundError: no such worker.
    """
    async with ctx.db.read() as session:
        return view(ctx, await _find(session, worker))


async def rotate_worker(ctx: ServiceContext, worker: str, *, base_url: str) -> CreateWorkerResponse:
    """Give a worker a new token (the old one stops working at once) and return it with the command.

    Rotating a revoked worker makes it usable again.

    Raises:
        WorkerNotFoundError: no such worker.
    """
    token = new_token()
    async with ctx.db.transaction() as session:
        row = await _find(session, worker)
        row.token_sha256 = hash_token(token)
        row.revoked_at = None
    return _created(ctx, row, token, base_url)


async def revoke_worker(ctx: ServiceContext, worker: str) -> WorkerView:
    """Stop a worker's token from working; the job it holds is requeued when its lease runs out.

    Raises:
        WorkerNotFoundError: no such worker.
    """
    async with ctx.db.transaction() as session:
        row = await _find(session, worker)
        if row.revoked_at is None:
            row.revoked_at = ctx.clock.now()
        return view(ctx, row)


async def drain_worker(ctx: ServiceContext, worker: str, *, draining: bool = True) -> WorkerView:
    """Let a worker finish its current job and take no more (``draining=False`` undoes it).

    Raises:
        WorkerNotFoundError: no such worker.
    """
    async with ctx.db.transaction() as session:
        row = await _find(session, worker)
        row.draining = draining
        return view(ctx, row)


async def delete_worker(ctx: ServiceContext, worker: str) -> str:
    """Delete a worker; its job, if any, is requeued when its lease runs out. Returns its id.

    Raises:
        WorkerNotFoundError: no such worker.
    """
    async with ctx.db.transaction() as session:
        row = await _find(session, worker)
        worker_id = row.id
        await session.delete(row)
        # Its assignments expire now, so the reaper requeues their jobs on its next round.
        await session.execute(
            update(WorkerAssignmentRow)
            .where(WorkerAssignmentRow.worker_id == worker_id)
            .values(lease_expires_at=ctx.clock.now() - timedelta(seconds=1))
        )
    return worker_id


async def worker_for_token(session: AsyncSession, token: str) -> WorkerRow:
    """Return the worker whose token this is.

    Raises:
        InvalidWorkerTokenError: unknown, rotated or revoked token.
    """
    row = await session.scalar(select(WorkerRow).where(WorkerRow.token_sha256 == hash_token(token)))
    if row is None or row.revoked_at is not None:
        raise InvalidWorkerTokenError()
    return row
