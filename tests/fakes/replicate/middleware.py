"""Outermost ASGI layer for ``/v1`` requests: recording, fault injection, auth, rate-limit headers.

It must wrap the Starlette app directly (be the callable given to uvicorn), because dropping a
reply closes the client connection through the server's transport, reached via uvicorn's ``send``.
Order per request: record → request fault (if one matches) → token check → route.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from http import HTTPStatus
from typing import Any

from .faults import RequestFault
from .state import FakeState, RequestRecord
from .util import INSUFFICIENT_CREDIT, PROBLEM_TYPE, THROTTLED, UNAUTHENTICATED, iso

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_NO_AUTH = re.compile(r"^/v1/files/[^/]+/download$")
_MAX_RECORDED_JSON = 1024 * 1024
DEFAULT_TIMEOUT_HOLD = 60.0


def token_of(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <t>`` or ``Token <t>`` header, else None."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() not in ("bearer", "token") or not value.strip():
        return None
    return value.strip()


def fault_body(fault: RequestFault) -> dict[str, Any]:
    """The body a status fault sends: its own, or the reference's body for that status."""
    if fault.body is not None:
        return fault.body
    if fault.status == 429:
        return dict(THROTTLED)
    if fault.status == 402:
        return dict(INSUFFICIENT_CREDIT)
    try:
        phrase = HTTPStatus(fault.status).phrase
    except ValueError:
        phrase = "Error"
    return {"title": phrase, "detail": f"{phrase} (injected by the fake)", "status": fault.status}


class FakeMiddleware:
    """Wraps the fake's Starlette app; see the module docstring."""

    def __init__(self, app: ASGIApp, state: FakeState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope["path"]).startswith("/v1"):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        record = self._record(scope, headers, body)
        fault = self.state.faults.take_request_fault(scope["method"], scope["path"])
        if fault is not None:
            record.fault_id, record.fault_kind = fault.id, fault.kind
        await self._dispatch(scope, replay, send, headers, record, fault)

    def _record(self, scope: Scope, headers: dict[str, str], body: bytes) -> RequestRecord:
        content_type = headers.get("content-type")
        parsed: Any = None
        if content_type and content_type.startswith("application/json") and len(body) <= _MAX_RECORDED_JSON:
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = None
        record = RequestRecord(
            seq=self.state.next_seq(),
            time=iso(time.time()),
            method=scope["method"],
            path=scope["path"],
            query=scope.get("query_string", b"").decode("latin-1"),
            token=token_of(headers.get("authorization")),
            user_agent=headers.get("user-agent"),
            content_type=content_type,
            json=parsed,
        )
        self.state.record_request(record)
        return record

    async def _dispatch(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        headers: dict[str, str],
        record: RequestRecord,
        fault: RequestFault | None,
    ) -> None:
        if fault is None:
            await self._handle(scope, receive, self._wrap(send, scope, record), headers)
        elif fault.kind == "delay":
            await asyncio.sleep(fault.seconds)
            await self._handle(scope, receive, self._wrap(send, scope, record), headers)
        elif fault.kind == "status":
            if fault.process:
                await self._handle(scope, receive, _discard, headers)
            await self._send_fault(send, fault, record)
        else:
            await self._handle(scope, receive, _discard, headers)
            if fault.kind == "timeout_reply":
                await _wait_for_disconnect(receive, fault.seconds or DEFAULT_TIMEOUT_HOLD)
            await _drop_connection(send)

    async def _handle(self, scope: Scope, receive: Receive, send: Send, headers: dict[str, str]) -> None:
        if not _NO_AUTH.match(scope["path"]):
            token = token_of(headers.get("authorization"))
            if token is None or token not in self.state.config.tokens:
                await _send_json(send, 401, UNAUTHENTICATED, PROBLEM_TYPE)
                return
        await self.app(scope, receive, send)

    def _wrap(self, send: Send, scope: Scope, record: RequestRecord) -> Send:
        limited = self.state.config.ratelimit_headers
        remaining = b"599" if scope["method"] == "POST" and scope["path"] == "/v1/predictions" else b"2999"

        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                record.status = int(message["status"])
                if limited:
                    message["headers"] = [
                        *message.get("headers", []),
                        (b"ratelimit-remaining", remaining),
                        (b"ratelimit-reset", b"1"),
                    ]
            await send(message)

        return wrapped

    async def _send_fault(self, send: Send, fault: RequestFault, record: RequestRecord) -> None:
        extra: list[tuple[bytes, bytes]] = []
        if fault.retry_after is not None:
            extra.append((b"retry-after", fault.retry_after.encode()))
        if fault.status == 429 and self.state.config.ratelimit_headers:
            extra += [(b"ratelimit-remaining", b"0"), (b"ratelimit-reset", (fault.retry_after or "30").encode())]
        record.status = fault.status
        await _send_json(send, fault.status, fault_body(fault), PROBLEM_TYPE, extra)


async def _discard(message: Message) -> None:
    """A ``send`` that throws the reply away (the request still takes effect)."""


async def _send_json(
    send: Send, status: int, body: Any, media_type: str, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    payload = json.dumps(body).encode()
    headers = [(b"content-type", media_type.encode()), (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers + (extra or [])})
    await send({"type": "http.response.body", "body": payload, "more_body": False})


async def _wait_for_disconnect(receive: Receive, limit: float) -> None:
    """Return when the client disconnects or after ``limit`` seconds, whichever comes first."""
    deadline = time.monotonic() + limit
    while (left := deadline - time.monotonic()) > 0:
        try:
            message = await asyncio.wait_for(receive(), timeout=left)
        except TimeoutError:
            return
        if message["type"] == "http.disconnect":
            return


async def _drop_connection(send: Send) -> None:
    """Close the client connection without a reply.

    uvicorn's ``send`` is a bound method of the request cycle, which holds the transport; aborting
    it makes the client see "server disconnected without sending a response".  If that is not
    reachable, a reply that promises more bytes than it sends makes the server close instead.
    """
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is not None and hasattr(transport, "abort"):
        transport.abort()
        for _ in range(3):
            await asyncio.sleep(0)
        return
    try:
        await send({"type": "http.response.start", "status": 201, "headers": [(b"content-length", b"4096")]})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    except Exception:
        return
