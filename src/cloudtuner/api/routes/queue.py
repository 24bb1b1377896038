"""Queue routes: the waiting jobs in order, a job's position, limits and priorities."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from cloudtuner.api.deps import Context, requires
from cloudtuner.core.permissions import Permission, Principal
from cloudtuner.schemas.common import ErrorResponse
from cloudtuner.schemas.queue import PriorityUpdate, QueuedJob, QueueLimits, QueueLimitsUpdate, QueueResponse
from cloudtuner.services import queue

router = APIRouter(prefix="/api/queue", tags=["queue"])

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "The job is not waiting, or the change is not valid."},
    404: {"model": ErrorResponse, "description": "No such job."},
    422: {"model": ErrorResponse, "description": "A field is missing or has the wrong type."},
}
ViewQueue = Annotated[Principal, Depends(requires(Permission.JOB_VIEW_ALL, Permission.QUEUE_MANAGE))]
ViewOwnJobs = Annotated[Principal, Depends(requires(Permission.JOB_VIEW_OWN, Permission.JOB_VIEW_ALL))]
ManageQueue = Annotated[Principal, Depends(requires(Permission.QUEUE_MANAGE))]


@router.get("", response_model=QueueResponse, responses=ERRORS, summary="The queue")
async def get_queue(
    ctx: Context,
    _principal: ViewQueue,
    limit: Annotated[int, Query(ge=1, le=500, description="Waiting jobs to list, in start order.")] = 100,
) -> QueueResponse:
    """Waiting jobs in the order they will start (priority, raised by waiting time, then age), with
    a rough ETA each; how many jobs are busy; and the limits."""
    return await queue.get_queue(ctx, limit=limit)


@router.get("/limits", response_model=QueueLimits, summary="Queue limits")
async def get_limits(ctx: Context, _principal: ViewQueue) -> QueueLimits:
    """How many jobs may run at once (all, per user, per team, per provider) and wait per user,
    and the priority each role's jobs start at."""
    return await queue.get_queue_limits(ctx)


@router.put("/limits", response_model=QueueLimits, responses=ERRORS, summary="Change queue limits")
async def put_limits(body: QueueLimitsUpdate, ctx: Context, _principal: ManageQueue) -> QueueLimits:
    """Change the fields sent; a field sent as null removes that limit. `role_priorities` changes
    the roles it names (null: every role back to its default)."""
    return await queue.update_queue_limits(ctx, body)


@router.get("/{job_id}/position", response_model=QueuedJob, responses=ERRORS, summary="A job's place in the queue")
async def get_position(job_id: str, ctx: Context, principal: ViewOwnJobs) -> QueuedJob:
    """Where a waiting job stands: its position (1 starts next) and a rough ETA."""
    return await queue.get_position(ctx, principal, job_id)


@router.put("/{job_id}/priority", response_model=QueuedJob, responses=ERRORS, summary="Change a job's priority")
async def put_priority(job_id: str, body: PriorityUpdate, ctx: Context, principal: ManageQueue) -> QueuedJob:
    """Move a waiting job up (higher priority) or down the queue."""
    return await queue.set_priority(ctx, principal, job_id, body.priority)
