"""The live feed: ``GET /api/cloud/events``, server-sent events of job changes for the web UI.

Each connection polls the job store (``services.events.JobFeed``), so it works the same with
several server processes on one database. The stream ends by itself after
:data:`STREAM_SECONDS` (browsers reconnect at once, with ``Last-Event-ID``, and the caller's
permission is checked again) and as soon as the server is asked to stop.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse

from cloudtuner.api.deps import Context, requires
from cloudtuner.core.permissions import Permission, Principal
from cloudtuner.schemas.events import FeedReady, JobStatusEvent
from cloudtuner.services import events as feed_service

router = APIRouter(tags=["events"])

STREAM_SECONDS = 300.0
"""A stream's longest life; the browser's EventSource reconnects and resumes from its last id."""

KEEPALIVE_SECONDS = 15.0
"""Idle time after which a comment line is sent, so proxies keep the connection open."""

RETRY_MILLISECONDS = 1000
"""How long a browser waits before reconnecting (the SSE ``retry:`` field)."""


def _server_stopping() -> bool:
    """Return True once the server process was asked to stop.

    uvicorn does not end open streams when it shuts down; it waits for them. While it serves,
    its signal handler is a bound method of its ``Server``, whose ``should_exit`` turns True on
    SIGTERM or SIGINT, which this reads (nothing is changed).
    """
    handler = signal.getsignal(signal.SIGTERM)
    server = getattr(handler, "__self__", None)
    return bool(getattr(server, "should_exit", False))


def _message(event: str, cursor: int, data: str) -> bytes:
    return f"event: {event}\nid: {cursor}\ndata: {data}\n\n".encode()


def _message_id(message: feed_service.FeedMessage, cursor: int) -> int:
    """Return a message's ``id:``: a state change's own event id; for others, the feed's cursor."""
    data = message.data
    return data.event_id if isinstance(data, JobStatusEvent) else cursor


def _parse_cursor(after: int | None, last_event_id: str | None) -> int | None:
    if last_event_id is not None and last_event_id.strip().isdigit():
        return int(last_event_id.strip())
    return after


async def _stream(request: Request, feed: feed_service.JobFeed) -> AsyncIterator[bytes]:
    ready = FeedReady(cursor=feed.cursor, poll_seconds=feed_service.POLL_SECONDS)
    yield f"retry: {RETRY_MILLISECONDS}\n".encode() + _message("ready", feed.cursor, ready.model_dump_json())
    started = last_sent = time.monotonic()
    while not _server_stopping() and time.monotonic() - started < STREAM_SECONDS:
        if await request.is_disconnected():
            return
        messages = await feed.poll()
        if messages:
            yield b"".join(_message(m.event, _message_id(m, feed.cursor), m.data.model_dump_json()) for m in messages)
            last_sent = time.monotonic()
        elif time.monotonic() - last_sent >= KEEPALIVE_SECONDS:
            yield b": ping\n\n"
            last_sent = time.monotonic()
        await asyncio.sleep(feed_service.POLL_SECONDS)


@router.get(
    "/api/cloud/events",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
            "description": "A stream of `ready`, `status` and `update` events (see schemas.events).",
        }
    },
    summary="Live job changes (server-sent events)",
)
async def job_events(
    request: Request,
    ctx: Context,
    principal: Annotated[Principal, Depends(requires(Permission.JOB_VIEW_OWN, Permission.JOB_VIEW_ALL))],
    after: Annotated[
        int | None, Query(ge=0, description="Resume after this feed id (the `id:` of the last message seen).")
    ] = None,
    last_event_id: Annotated[str | None, Header(description="Sent by browsers when they reconnect.")] = None,
) -> StreamingResponse:
    """State changes, progress, cost and log growth of the jobs the caller may see, as they happen.

    Messages: `ready` (`{"cursor", "poll_seconds"}`), `status` (a job changed state: the timeline
    entry and the job's list view) and `update` (an active job's progress, cost, error or log
    length changed). Every message has an `id:`; reconnecting with `Last-Event-ID` (browsers do
    it by themselves) or `?after=` loses nothing. Without either, the feed starts now.
    """
    cursor = _parse_cursor(after, last_event_id)
    if cursor is None:
        cursor = await feed_service.latest_event_id(ctx)
    feed = feed_service.JobFeed(ctx=ctx, principal=principal, cursor=cursor)
    return StreamingResponse(
        _stream(request, feed),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
