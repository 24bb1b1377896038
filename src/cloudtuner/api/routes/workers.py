"""Worker administration: /api/admin/workers (worker.manage)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, status

from cloudtuner.api.deps import Context, requires
from cloudtuner.core.permissions import Permission, Principal
from cloudtuner.schemas.common import ErrorResponse
from cloudtuner.schemas.workers import (
    CreateWorkerRequest,
    CreateWorkerResponse,
    DeleteWorkerResponse,
    WorkerListResponse,
    WorkerResponse,
)
from cloudtuner.services import workers
from cloudtuner.services.context import ServiceContext
from cloudtuner.services.settings_documents import public_url

router = APIRouter(prefix="/api/admin/workers", tags=["workers"])

ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "No worker has that id or name."},
    409: {"model": ErrorResponse, "description": "The name is taken."},
    422: {"model": ErrorResponse, "description": "A field is missing or has the wrong type."},
}
ManageWorkers = Annotated[Principal, Depends(requires(Permission.WORKER_MANAGE))]


async def _base_url(ctx: ServiceContext, request: Request) -> str:
    return (await public_url(ctx)) or str(request.base_url).rstrip("/")


@router.get("", response_model=WorkerListResponse, summary="List workers")
async def list_workers(ctx: Context, _principal: ManageWorkers) -> WorkerListResponse:
    """Every worker with its status (connecting, idle, busy, draining, offline, revoked), labels,
    GPUs, current job and last heartbeat."""
    return await workers.list_workers(ctx)


@router.post(
    "",
    response_model=CreateWorkerResponse,
    status_code=status.HTTP_201_CREATED,
    responses=ERRORS,
    summary="Create a worker",
)
async def create_worker(
    body: CreateWorkerRequest, request: Request, ctx: Context, principal: ManageWorkers
) -> CreateWorkerResponse:
    """Create a worker; the reply holds its token (shown this once) and the exact command that
    starts it: `cloudtuner worker --orchestrator-url URL --worker-token TOKEN`."""
    base_url = await _base_url(ctx, request)
    return await workers.create_worker(ctx, body, base_url=base_url, created_by=principal.id)


@router.get("/{worker}", response_model=WorkerResponse, responses=ERRORS, summary="Get a worker")
async def get_worker(worker: str, ctx: Context, _principal: ManageWorkers) -> WorkerResponse:
    """One worker, by id or name."""
    return WorkerResponse(worker=await workers.get_worker(ctx, worker))


@router.post("/{worker}/rotate", response_model=CreateWorkerResponse, responses=ERRORS, summary="Rotate a token")
async def rotate_worker(worker: str, request: Request, ctx: Context, _principal: ManageWorkers) -> CreateWorkerResponse:
    """Give the worker a new token (shown this once); the old one stops working at once."""
    return await workers.rotate_worker(ctx, worker, base_url=await _base_url(ctx, request))


@router.post("/{worker}/revoke", response_model=WorkerResponse, responses=ERRORS, summary="Revoke a worker")
async def revoke_worker(worker: str, ctx: Context, _principal: ManageWorkers) -> WorkerResponse:
    """Stop the worker's token from working; a job it holds is requeued when its lease runs out."""
    return WorkerResponse(worker=await workers.revoke_worker(ctx, worker))


@router.post("/{worker}/drain", response_model=WorkerResponse, responses=ERRORS, summary="Drain a worker")
async def drain_worker(worker: str, ctx: Context, _principal: ManageWorkers) -> WorkerResponse:
    """Let the worker finish its current job and take no more (it then exits)."""
    return WorkerResponse(worker=await workers.drain_worker(ctx, worker))


@router.post("/{worker}/undrain", response_model=WorkerResponse, responses=ERRORS, summary="Undrain a worker")
async def undrain_worker(worker: str, ctx: Context, _principal: ManageWorkers) -> WorkerResponse:
    """Let a draining worker take jobs again."""
    return WorkerResponse(worker=await workers.drain_worker(ctx, worker, draining=False))


@router.delete("/{worker}", response_model=DeleteWorkerResponse, responses=ERRORS, summary="Delete a worker")
async def delete_worker(worker: str, ctx: Context, _principal: ManageWorkers) -> DeleteWorkerResponse:
    """Delete the worker; a job it holds is requeued at once."""
    return DeleteWorkerResponse(worker_id=await workers.delete_worker(ctx, worker))
