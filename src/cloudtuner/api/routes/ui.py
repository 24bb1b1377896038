"""The web UI's routes: the page at ``/``, its built assets, and the job search it uses.

The page and its assets are public (they hold no data; every API call they make is checked).
Navigation inside the app uses the URL's fragment (``/#/jobs/ID``), so no other page route exists.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response
from fastapi.responses import FileResponse, HTMLResponse
from pydantic_core import to_json

from cloudtuner import web
from cloudtuner.api.deps import Context, requires
from cloudtuner.api.routes.jobs import ERRORS
from cloudtuner.core.errors import InvalidRequestError, NotFoundError
from cloudtuner.core.permissions import Permission, Principal
from cloudtuner.core.states import JobStatus
from cloudtuner.schemas.jobs import JobListResponse
from cloudtuner.services import job_search
from cloudtuner.services.jobs import MAX_PAGE_SIZE

router = APIRouter()

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
"""Everything the page loads comes from this server: no CDN, no third-party origin."""

NOT_BUILT_PAGE = (
    "<!doctype html><html lang=en><meta charset=utf-8><title>cloudtuner</title>"
    "<p>The cloudtuner web UI is not built here: run <code>./dev setup</code> (it needs node and npm). "
    'The API works; its documentation is at <a href="/docs">/docs</a>.</p></html>'
)


def _statuses(raw: list[str] | None) -> list[JobStatus] | None:
    """Return the states named in ``?status=`` (repeated or comma-separated), or None for all.

    Raises:
        InvalidRequestError: one is not a job state.
    """
    names = [part.strip().lower() for value in raw or () for part in value.split(",") if part.strip()]
    try:
        return [JobStatus(name) for name in names] or None
    except ValueError:
        known = ", ".join(s.value for s in JobStatus)
        raise InvalidRequestError(f"Unknown status in {names}; use one of: {known}.") from None


@router.get("/", include_in_schema=False)
async def index() -> Response:
    """The web UI's page, or a one-line hint when it was not built."""
    page = web.index_file()
    headers = {"Cache-Control": "no-cache", "Content-Security-Policy": CONTENT_SECURITY_POLICY}
    if page is None:
        return HTMLResponse(NOT_BUILT_PAGE, headers=headers)
    return FileResponse(page, media_type="text/html", headers=headers)


@router.get("/assets/{name:path}", include_in_schema=False)
async def asset(name: str) -> Response:
    """A built script, style sheet or font; names carry a content hash, so they are cached for good."""
    path = web.asset_file(name)
    if path is None:
        raise NotFoundError("There is no such file in the web UI; rebuild it with ./dev setup.")
    return FileResponse(path, headers={"Cache-Control": "public, max-age=31536000, immutable"})


@router.get(
    "/api/cloud/search/jobs",
    response_model=JobListResponse,
    responses=ERRORS,
    summary="Search jobs",
    tags=["jobs"],
)
async def search_jobs(
    ctx: Context,
    principal: Annotated[Principal, Depends(requires(Permission.JOB_VIEW_OWN, Permission.JOB_VIEW_ALL))],
    q: Annotated[str, Query(min_length=1, max_length=200, description="Text in the run name, config name or ids.")],
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="Jobs per page.")] = 50,
    status_filter: Annotated[
        list[str] | None, Query(alias="status", description="Only jobs in these states (repeat or comma-separate).")
    ] = None,
    provider: Annotated[str | None, Query(description="Only jobs of this provider.")] = None,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page.")] = None,
) -> Response:
    """Jobs whose run name, config name, job id or provider run id contain `q` (any case), newest
    first, a page at a time: the reply of `GET /api/cloud/jobs`. One request looks through at most
    `window_size` jobs; `window_ended: true` says fewer than a page matched there and `next_cursor`
    goes on with older jobs."""
    page = await job_search.search_jobs(
        ctx, principal, q, limit=limit, statuses=_statuses(status_filter), provider=provider, cursor=cursor
    )
    reply = {
        "jobs": page.jobs,
        "next_cursor": page.next_cursor,
        "has_more": page.next_cursor is not None,
        "sync": None,
        "window_ended": page.window_ended,
        "window_size": job_search.SCAN_ROWS,
    }
    return Response(to_json(reply, inf_nan_mode="null"), media_type="application/json")
