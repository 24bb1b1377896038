"""Job routes: /api/cloud/jobs. Thin: parse, authorize, call one service, shape the reply."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status
from pydantic_core import to_json
from starlette.routing import Match, Route
from starlette.types import Scope

from cloudtuner.api.audit_middleware import audit_event
from cloudtuner.api.auth_request import request_audit
from cloudtuner.api.deps import Context, SchedulerDep, requires
from cloudtuner.api.json_body import parse_body
from cloudtuner.core.errors import InvalidRequestError
from cloudtuner.core.permissions import Permission, Principal
from cloudtuner.core.states import JobStatus
from cloudtuner.schemas.common import ErrorResponse
from cloudtuner.schemas.jobs import (
    CancelJobResponse,
    DeleteJobResponse,
    JobListResponse,
    JobLogsResponse,
    JobResponse,
    PreviewResponse,
    SubmitJobRequest,
    SubmitJobResponse,
    SyncResponse,
)
from cloudtuner.services import jobs as job_service
from cloudtuner.services import submissions
from cloudtuner.services import sync as sync_service
from cloudtuner.services.context import ServiceContext

router = APIRouter(prefix="/api/cloud/jobs", tags=["jobs"])

ERRORS: dict[int | str, dict[str, object]] = {
    400: {"model": ErrorResponse, "description": "The request is not valid."},
    404: {"model": ErrorResponse, "description": "No such job."},
    403: {"model": ErrorResponse, "description": "Uploads are turned off (consent mode never_upload)."},
    409: {"model": ErrorResponse, "description": "The job's state does not allow this."},
    422: {"model": ErrorResponse, "description": "A field is missing or has the wrong type."},
    428: {"model": ErrorResponse, "description": "Local datasets would be uploaded: resend with upload_consent."},
}


def _parse_statuses(raw: list[str] | None) -> list[JobStatus] | None:
    if not raw:
        return None
    statuses: list[JobStatus] = []
    for part in (p for value in raw for p in value.split(",")):
        if not part.strip():
            continue
        try:
            statuses.append(JobStatus(part.strip().lower()))
        except ValueError:
            known = ", ".join(s.value for s in JobStatus)
            raise InvalidRequestError(f"Unknown status {part.strip()!r}; use one of: {known}.") from None
    return statuses or None


SUBMIT_PATH = "/api/cloud/jobs/submit"
_SUBMIT_GUARD = requires(Permission.JOB_SUBMIT)
"""The submit route's permission check, shared by its FastAPI route and its fast route."""
DEFAULT_PROVIDER = "replicate"


@router.post(
    "/submit",
    response_model=SubmitJobResponse,
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        200: {"model": SubmitJobResponse, "description": "An idempotent replay: the earlier job."},
        402: {"model": ErrorResponse, "description": "A spending limit whose action is block refused the job."},
        **ERRORS,
    },
    summary="Submit a training job",
)
async def submit_job(
    request: Request,
    body: SubmitJobRequest,
    ctx: Context,
    principal: Annotated[Principal, Depends(_SUBMIT_GUARD)],
    provider: Annotated[str, Query(description="Where to run it: replicate, worker, local, ...")] = DEFAULT_PROVIDER,
) -> Response:
    """Queue a job from a saved config (`config_name_to_load`) or an inline `config` with its
    `dataloader_config`. Returns at once; the scheduler starts the job when limits allow."""
    return await _submit(request, ctx, principal, provider, body)


async def _submit(
    request: Request, ctx: ServiceContext, principal: Principal, provider: str, body: SubmitJobRequest
) -> Response:
    """Submit ``body`` and shape the reply: 202 with the new job, or 200 with an idempotent replay's.

    A new job's audit entry is written with the job (``api.audit_middleware``'s module docstring).
    """
    entry = await audit_event(request.scope, status.HTTP_202_ACCEPTED, {})
    result = await submissions.submit_job(
        ctx, principal, provider.strip().lower(), body, priority=body.priority, audit=entry
    )
    if not result.idempotent_hit:
        request_audit(request.scope).written = True
    reply = SubmitJobResponse(
        job_id=result.job.job_id,
        status=result.job.status,
        idempotent_hit=result.idempotent_hit,
        estimate=result.estimate,
        warnings=result.warnings,
        job=result.job,
    )
    # Already validated: send it as JSON rather than have FastAPI validate the reply again.
    return Response(
        reply.model_dump_json(),
        status_code=status.HTTP_200_OK if result.idempotent_hit else status.HTTP_202_ACCEPTED,
        media_type="application/json",
    )


async def _fast_submit(request: Request) -> Response:
    """``POST /api/cloud/jobs/submit`` without FastAPI's request handling (see :func:`fast_submit_route`)."""
    body = await parse_body(request, SubmitJobRequest)  # a body that is not JSON is refused first, as in FastAPI
    principal = await _SUBMIT_GUARD(request)
    provider = request.query_params.get("provider", DEFAULT_PROVIDER)
    ctx: ServiceContext = request.app.state.ctx
    return await _submit(request, ctx, principal, provider, body.value())


class _AuditedRoute(Route):
    """A plain route that puts itself in the scope when it matches, as FastAPI's routes do: the
    audit middleware names an entry after ``scope["route"]``."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child_scope = super().matches(scope)
        if match is not Match.NONE:
            child_scope["route"] = self
        return match, child_scope


def fast_submit_route() -> Route:
    """Return the route that answers submissions, to be matched before every other route.

    Clients send jobs in streams, and for each the framework's route matching, dependency
    solving and parameter handling cost about a quarter of the submission's CPU. This plain route
    answers exactly as :func:`submit_job` does: the same permission check, the same function,
    the same body errors (``api.json_body``), the same name for the audit log; the app's error
    handlers and middleware apply to it as to any route. :func:`submit_job` stays declared for
    the OpenAPI schema (a test holds the two to the same replies).
    """
    return _AuditedRoute(SUBMIT_PATH, _fast_submit, methods=["POST"], name=submit_job.__name__, include_in_schema=False)


@router.post("/preview", response_model=PreviewResponse, responses=ERRORS, summary="Preview a submission")
async def preview_job(
    body: SubmitJobRequest,
    ctx: Context,
    _principal: Annotated[Principal, Depends(requires(Permission.JOB_SUBMIT))],
    provider: Annotated[str, Query(description="Where the job would run.")] = "replicate",
) -> PreviewResponse:
    """Show what a submission would upload (datasets, files, sizes, excluded files, the provider's
    limit) and whether it needs `upload_consent`, without creating a job."""
    return await submissions.preview_job(ctx, provider.strip().lower(), body)


@router.get("", response_model=JobListResponse, responses=ERRORS, summary="List jobs")
async def list_jobs(
    ctx: Context,
    scheduler: SchedulerDep,
    principal: Annotated[Principal, Depends(requires(Permission.JOB_VIEW_OWN, Permission.JOB_VIEW_ALL))],
    limit: Annotated[int, Query(ge=1, le=job_service.MAX_PAGE_SIZE, description="Jobs per page.")] = 50,
    status_filter: Annotated[
        list[str] | None, Query(alias="status", description="Only jobs in these states (repeat or comma-separate).")
    ] = None,
    provider: Annotated[str | None, Query(description="Only jobs of this provider.")] = None,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page.")] = None,
    sync_active: Annotated[bool, Query(description="Read active jobs from their providers first.")] = False,
) -> Response:
    """Jobs the caller may see, newest first, a page at a time."""
    statuses = _parse_statuses(status_filter)
    sync = None
    if sync_active:
        sync = await sync_service.sync_jobs(ctx, principal, scheduler.owner, import_runs=False)
    page = await job_service.list_jobs(ctx, principal, limit=limit, statuses=statuses, provider=provider, cursor=cursor)
    # A JobListResponse, serialised as FastAPI would, without validating again what the service
    # built from the job store (the jobs are JobSummary's wire form; see services.job_views).
    reply = {"jobs": page.jobs, "next_cursor": page.next_cursor, "has_more": page.next_cursor is not None, "sync": sync}
    return Response(to_json(reply, inf_nan_mode="null"), media_type="application/json")


@router.post("/sync", response_model=SyncResponse, summary="Sync jobs from providers")
async def sync_jobs(
    ctx: Context,
    scheduler: SchedulerDep,
    principal: Annotated[Principal, Depends(requires(Permission.JOB_SYNC))],
) -> SyncResponse:
    """Read every active job from its provider now, and import provider runs not yet known (for
    callers who may see every job: an imported run becomes the caller's)."""
    import_runs = principal.can(Permission.JOB_VIEW_ALL)
    return await sync_service.sync_jobs(ctx, principal, scheduler.owner, import_runs=import_runs)


@router.get("/{job_id}", response_model=JobResponse, responses=ERRORS, summary="Get a job")
async def get_job(
    job_id: str,
    ctx: Context,
    principal: Annotated[Principal, Depends(requires(Permission.JOB_VIEW_OWN, Permission.JOB_VIEW_ALL))],
) -> JobResponse:
    """One job with its config, config snapshot and timeline."""
    return JobResponse(job=await job_service.get_job(ctx, principal, job_id))


@router.get("/{job_id}/logs", response_model=JobLogsResponse, responses=ERRORS, summary="Get a job's logs")
async def get_job_logs(
    job_id: str,
    ctx: Context,
    principal: Annotated[Principal, Depends(requires(Permission.JOB_VIEW_OWN, Permission.JOB_VIEW_ALL))],
    offset: Annotated[int, Query(ge=0, description="Return only the log after this position.")] = 0,
    tail: Annotated[int | None, Query(ge=0, le=100_000, description="Return only the last N lines.")] = None,
) -> JobLogsResponse:
    """The job's log; poll with `offset=next_offset` to follow it."""
    return await job_service.get_job_logs(ctx, principal, job_id, offset=offset, tail_lines=tail)


@router.post("/{job_id}/cancel", response_model=CancelJobResponse, responses=ERRORS, summary="Cancel a job")
async def cancel_job(
    job_id: str,
    ctx: Context,
    principal: Annotated[Principal, Depends(requires(Permission.JOB_CANCEL_OWN, Permission.JOB_CANCEL_ALL))],
) -> CancelJobResponse:
    """Stop a queued or running job. A finished job gets 409."""
    return await job_service.cancel_job(ctx, principal, job_id)


@router.delete("/{job_id}", response_model=DeleteJobResponse, responses=ERRORS, summary="Delete a finished job")
async def delete_job(
    job_id: str,
    request: Request,
    ctx: Context,
    principal: Annotated[Principal, Depends(requires(Permission.JOB_DELETE_OWN, Permission.JOB_DELETE_ALL))],
    delete_artifacts: Annotated[
        bool, Query(description="Also delete the model files delivered back to this server.")
    ] = False,
) -> DeleteJobResponse:
    """Delete a completed, failed or cancelled job with its logs. Others get 409. The model it
    delivered stays in place unless `delete_artifacts=true` (files on this server only)."""
    store = request.app.state.storage.store if delete_artifacts else None
    deleted = await job_service.delete_job(ctx, principal, job_id, artifact_store=store)
    return DeleteJobResponse(
        job_id=job_id, artifacts_deleted=deleted.artifacts_deleted, artifacts_kept=deleted.artifacts_kept
    )
