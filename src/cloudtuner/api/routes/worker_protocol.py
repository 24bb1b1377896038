"""The worker protocol: /api/worker/... spoken by ``cloudtuner worker``.

These routes are authenticated by the worker's token (``Authorization: Bearer ctw_...``), not by
a user: they are listed in ``api.deps.WORKER_ROUTES``. Every report about a job carries the
claim's lease token; a report from a lost lease is ignored.
"""

from __future__ import annotations

import base64
import contextlib
import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import StreamingResponse
from starlette.types import Send

from cloudtuner.api.deps import Context
from cloudtuner.api.routes import workers as worker_routes
from cloudtuner.core.errors import InvalidWorkerTokenError
from cloudtuner.packaging import PackagingError
from cloudtuner.schemas.common import ErrorResponse
from cloudtuner.schemas.workers import (
    AckResponse,
    ClaimRequest,
    ClaimResponse,
    HeartbeatRequest,
    HeartbeatResponse,
    LogUploadRequest,
    RegisterWorkerRequest,
    RegisterWorkerResponse,
    ResultRequest,
)
from cloudtuner.services import workers_local, workers_protocol
from cloudtuner.services.context import ServiceContext
from cloudtuner.services.uploads import archive_chunks

router = APIRouter(prefix="/api/worker", tags=["worker protocol"])

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "No worker token, or not a valid one."},
    409: {"model": ErrorResponse, "description": "This worker does not hold the job."},
}
EXTRACT_ROOT = "/datasets"
"""Where the dataloader config sent with a job's archive expects the archive to be unpacked."""


async def worker_token(request: Request) -> str:
    """Return the worker token of the request (``Authorization: Bearer ...``).

    Raises:
        InvalidWorkerTokenError: none was sent.
    """
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidWorkerTokenError("Send the worker token as 'Authorization: Bearer <token>'.")
    return token.strip()


WorkerToken = Annotated[str, Depends(worker_token)]


def _work(request: Request) -> workers_protocol.WorkAvailable:
    work: workers_protocol.WorkAvailable = request.app.state.worker_work
    return work


@router.post("/register", response_model=RegisterWorkerResponse, responses=ERRORS, summary="Register a worker")
async def register(body: RegisterWorkerRequest, ctx: Context, token: WorkerToken) -> RegisterWorkerResponse:
    """A worker starts: it reports its GPUs, labels and host. Jobs it held before a restart are
    given up (requeued) and listed."""
    return await workers_protocol.register_worker(ctx, token, body)


@router.post("/claim", response_model=ClaimResponse, responses=ERRORS, summary="Claim a job")
async def claim(body: ClaimRequest, request: Request, ctx: Context, token: WorkerToken) -> ClaimResponse:
    """Long-poll for the next job this worker can run (labels and GPU requirements matched);
    returns `job: null` when none came within `wait_seconds`, `drain: true` when draining."""
    return await workers_protocol.claim_job(
        ctx,
        token,
        body.wait_seconds,
        _work(request),
        base_url=str(request.base_url).rstrip("/"),
    )


@router.post("/jobs/{job_id}/heartbeat", response_model=HeartbeatResponse, responses=ERRORS, summary="Heartbeat a job")
async def heartbeat(job_id: str, body: HeartbeatRequest, ctx: Context, token: WorkerToken) -> HeartbeatResponse:
    """Extend the lease on a job; `keep_running: false` tells the worker to stop its trainer."""
    return await workers_protocol.heartbeat(ctx, token, job_id, body.lease_token, running=body.running)


@router.post("/jobs/{job_id}/logs", response_model=AckResponse, responses=ERRORS, summary="Upload log lines")
async def logs(job_id: str, body: LogUploadRequest, ctx: Context, token: WorkerToken) -> AckResponse:
    """Append trainer log text to the job's log; progress (stage, step, loss) is parsed from it."""
    return await workers_protocol.append_logs(ctx, token, job_id, body.lease_token, body.text)


@router.post("/jobs/{job_id}/result", response_model=AckResponse, responses=ERRORS, summary="Report a result")
async def result(job_id: str, body: ResultRequest, ctx: Context, token: WorkerToken) -> AckResponse:
    """Report how the job ended; ignored (`accepted: false`) if the lease was lost."""
    return await workers_protocol.report_result(ctx, token, job_id, body)


@router.get(
    "/jobs/{job_id}/datasets",
    response_class=StreamingResponse,
    responses={**ERRORS, 200: {"content": {"application/zip": {}}, "description": "The datasets' zip."}},
    summary="Fetch a job's datasets",
)
async def datasets(
    job_id: str, ctx: Context, token: WorkerToken, lease_token: Annotated[str, Query(max_length=64)]
) -> StreamingResponse:
    """The job's local datasets packed into one zip while it is sent (chunked; no file is kept on
    the server). The `X-Cloudtuner-Dataloader` header holds the dataloader config (base64 JSON)
    with paths under `X-Cloudtuner-Extract-Root`. If a dataset changes while it is being sent, the
    reply stops before its end: treat a download that does not end as failed."""
    prepared = await workers_protocol.package_datasets(ctx, token, job_id, lease_token)
    dataloader = base64.b64encode(json.dumps(prepared.dataloader).encode()).decode()
    return _ZipStream(
        archive_chunks(prepared.scan),
        media_type="application/zip",
        headers={"X-Cloudtuner-Dataloader": dataloader, "X-Cloudtuner-Extract-Root": EXTRACT_ROOT},
    )


class _ZipStream(StreamingResponse):
    """A zip packed while it is sent, which stops short if packing fails part way.

    ``archive_chunks`` has logged why. The reply then ends without its last message, so the
    server closes the connection and the worker sees a download cut short, never a reply that
    looks complete around a broken zip. The error goes no further: the app's error handlers
    cannot answer once a reply has started.
    """

    async def stream_response(self, send: Send) -> None:
        with contextlib.suppress(PackagingError):
            await super().stream_response(send)


def install(app: FastAPI, ctx: ServiceContext) -> None:
    """Add the worker admin routes and the worker protocol to ``app``, and attach the job store to
    its worker providers (``app.state.worker_work`` wakes this process's waiting claims)."""
    app.state.worker_work = workers_local.attach_worker_providers(ctx)
    app.include_router(worker_routes.router)
    app.include_router(router)
