"""Where changes made through the API are written to the audit log.

Every request with a method that may change state (anything but GET, HEAD and OPTIONS) to a
route that checks permissions is recorded once its reply is known: the actor (or ``anonymous``
when refused), the action (the route's name, e.g. ``submit_job``), the path, the client address,
the status and its outcome. The reply's last part is held back until the entry is committed, so
a client that has its reply finds the entry in ``GET /api/audit``.

One route writes its own entry: a submission that creates a job has its entry (built here by
:func:`audit_event`) written in the job's own transaction, so that a job never exists without
it; the route then marks the request ``written`` and the middleware writes nothing more.

Public routes are not recorded here: webhooks and S3 requests authenticate by their own
signatures and are traced elsewhere (job events, storage), and sign-ins are recorded by
``services.auth.login`` with the username tried. Only ids and error codes are taken from a reply,
never a body: no secret reaches the log.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cloudtuner.api.auth_request import SAFE_METHODS, client_ip, request_audit
from cloudtuner.services.audit import AuditEvent, outcome_for
from cloudtuner.services.context import ServiceContext

log = logging.getLogger(__name__)


CAPTURE_LIMIT = 64 * 1024
"""Replies up to this size are read for ids and error codes."""
REPLY_FIELDS = ("job_id", "id", "code")
"""The only reply fields copied into an entry's detail."""


class AuditMiddleware:
    """ASGI middleware that records each change (see the module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method", "GET") in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        record = request_audit(scope)
        status = 500
        json_reply = False
        captured = bytearray()
        recorded = False

        async def send_and_record(message: Message) -> None:
            nonlocal status, json_reply, recorded
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = dict(message.get("headers") or [])
                json_reply = headers.get(b"content-type", b"").startswith(b"application/json")
            elif message["type"] == "http.response.body":
                body = message.get("body", b"")
                if json_reply and len(captured) + len(body) <= CAPTURE_LIMIT:
                    captured.extend(body)
                else:
                    json_reply = False
                if not message.get("more_body", False) and not recorded:
                    recorded = True
                    await self._record(scope, status, bytes(captured) if json_reply else b"")
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        except Exception:
            if not recorded and record.checked:
                recorded = True
                await self._record(scope, 500, b"")
            raise

    async def _record(self, scope: Scope, status: int, reply: bytes) -> None:
        record = request_audit(scope)
        if not record.checked or record.written:
            return
        try:
            event = await audit_event(scope, status, _reply_fields(reply))
            ctx: ServiceContext = scope["app"].state.ctx
            await ctx.audit.record(event)
        except Exception:
            # The change itself is done; failing its reply now would only hide that from the client.
            log.exception("could not write the audit entry for %s %s", scope.get("method"), scope.get("path"))


async def audit_event(scope: Scope, status: int, reply_fields: Mapping[str, Any]) -> AuditEvent:
    """Return the entry that records a request to a route that checked permissions, replied
    with ``status``; ``reply_fields`` (ids and error codes, see :data:`REPLY_FIELDS`) join its detail."""
    record = request_audit(scope)
    request = Request(scope)
    ctx: ServiceContext = request.app.state.ctx
    auth = record.authentication
    route = scope.get("route")
    route_path = getattr(route, "path", None) or scope.get("path", "")
    detail: dict[str, Any] = {"method": scope.get("method"), "route": route_path}
    if auth is not None and auth.credential_id is not None:
        detail[auth.via] = auth.credential_id
    detail.update(reply_fields)
    return AuditEvent(
        actor_id=auth.principal.id if auth else "anonymous",
        actor_name=auth.principal.name if auth else "anonymous",
        via=auth.via if auth else "none",
        action=getattr(route, "name", None) or f"{scope.get('method')} {route_path}",
        target=scope.get("path", ""),
        outcome=outcome_for(status),
        source_ip=await client_ip(ctx, request) or None,
        status=status,
        detail=detail,
    )


def _reply_fields(reply: bytes) -> dict[str, Any]:
    if not reply:
        return {}
    try:
        body = json.loads(reply)
    except ValueError:
        return {}
    if not isinstance(body, dict):
        return {}
    return {name: body[name] for name in REPLY_FIELDS if isinstance(body.get(name), str | int)}
