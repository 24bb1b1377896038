"""Artifact routes: the files a job delivered, and a download of those kept on this server.

``GET /api/cloud/jobs/{id}/artifacts`` lists them with the state of the job's delivery;
``GET|HEAD /api/cloud/jobs/{id}/artifacts/{artifact_id}/download`` streams a local one (the
built-in S3 endpoint's file), with one byte range per request (``Range: bytes=a-b``, 206/416)
and ``If-Range`` on its ETag. The file is read in chunks from disk; nothing holds it in memory.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import StreamingResponse

from cloudtuner.api.deps import Context, requires
from cloudtuner.core.permissions import Permission, Principal
from cloudtuner.schemas.artifacts import ArtifactListResponse
from cloudtuner.schemas.common import ErrorResponse
from cloudtuner.services import artifacts as artifact_service
from cloudtuner.services.storage_endpoint import StorageEndpoint
from cloudtuner.storage import S3Error
from cloudtuner.storage.ranges import ByteRange, parse_range

router = APIRouter(prefix="/api/cloud/jobs", tags=["artifacts"])

ViewJobs = Annotated[Principal, Depends(requires(Permission.JOB_VIEW_OWN, Permission.JOB_VIEW_ALL))]
ERRORS: dict[int | str, dict[str, object]] = {
    400: {"model": ErrorResponse, "description": "The artifact is not stored on this server."},
    404: {"model": ErrorResponse, "description": "No such job or artifact."},
}


@router.get("/{job_id}/artifacts", response_model=ArtifactListResponse, responses=ERRORS, summary="List artifacts")
async def list_artifacts(job_id: str, ctx: Context, principal: ViewJobs) -> ArtifactListResponse:
    """The files the job delivered (weights, checkpoints, samples), each with its size, SHA-256,
    destination and time, and where the job's delivery stands."""
    return await artifact_service.list_artifacts(ctx, principal, job_id)


def _range_or_none(request: Request, size: int, etag: str) -> ByteRange | None:
    if_range = request.headers.get("if-range")
    if if_range is not None and if_range.strip().strip('"') != etag:
        return None  # the file changed since the client's partial copy: send it whole
    return parse_range(request.headers.get("range"), size)


@router.head("/{job_id}/artifacts/{artifact_id}/download", include_in_schema=False)
@router.get(
    "/{job_id}/artifacts/{artifact_id}/download",
    responses={
        200: {"content": {"application/octet-stream": {}}, "description": "The file."},
        206: {"description": "The requested byte range."},
        416: {"model": ErrorResponse, "description": "The range lies outside the file."},
        **ERRORS,
    },
    response_class=Response,
    summary="Download an artifact",
)
async def download_artifact(
    job_id: str, artifact_id: int, request: Request, ctx: Context, principal: ViewJobs
) -> Response:
    """Stream a file delivered back to this server. Supports `Range` (one range) and `If-Range`."""
    endpoint: StorageEndpoint = request.app.state.storage
    artifact, opened = await artifact_service.open_local_artifact(ctx, principal, job_id, artifact_id, endpoint.store)
    try:
        info = opened.info
        try:
            byte_range = _range_or_none(request, info.size, info.etag)
        except S3Error:
            await opened.aclose()
            return Response(
                status_code=416,
                headers={"Content-Range": f"bytes */{info.size}"},
                content=b'{"detail": "The range lies outside the file.", "code": "range_not_satisfiable"}',
                media_type="application/json",
            )
        name = artifact.path.rsplit("/", 1)[-1]
        headers = {
            "Accept-Ranges": "bytes",
            "ETag": f'"{info.etag}"',
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(name)}",
        }
        if artifact.sha256:
            headers["X-Checksum-Sha256"] = artifact.sha256
        status, start, length = 200, 0, info.size
        if byte_range is not None:
            status, start, length = 206, byte_range.start, byte_range.length
            headers["Content-Range"] = byte_range.content_range()
        headers["Content-Length"] = str(length)
        media_type = info.content_type or "application/octet-stream"
        if request.method == "HEAD":
            await opened.aclose()
            return Response(status_code=status, headers=headers, media_type=media_type)
        stream = opened.stream(start, length)
    except BaseException:
        await opened.aclose()
        raise

    async def body() -> AsyncIterator[bytes]:
        try:
            async for chunk in stream:
                yield chunk
        finally:
            with contextlib.suppress(Exception):
                await stream.aclose()

    return StreamingResponse(body(), status_code=status, headers=headers, media_type=media_type)
