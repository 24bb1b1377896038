"""POST /api/webhooks/{provider}, answered ahead of the framework's routing and middleware.

A provider may deliver a thousand webhooks a second, and for each of them the framework's route
matching, request and response objects, dependency solving, exception wrappers and the audit
middleware (which records nothing for this public route) cost more CPU than verifying and
applying the delivery. :class:`WebhookFastPath` is the outermost middleware of the app: a POST to
``/api/webhooks/<provider>`` (one path segment) is read and answered here with the route's own
function (``routes.webhooks.accept_webhook``) and the app's own error replies
(``api.errors``), so it answers exactly as the route would; every other request goes on to the
app unchanged. The route stays declared, for the OpenAPI schema.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Receive, Scope, Send

from cloudtuner.api.errors import reply_for_error, reply_for_unexpected
from cloudtuner.api.routes.webhooks import MAX_WEBHOOK_BYTES, accept_webhook
from cloudtuner.core.errors import CloudtunerError
from cloudtuner.services.context import ServiceContext

PREFIX = "/api/webhooks/"


def provider_in_path(scope: Scope) -> str | None:
    """Return the ``{provider}`` of a POST to ``/api/webhooks/{provider}``, else None."""
    if scope["type"] != "http" or scope.get("method") != "POST":
        return None
    path: str = scope.get("path", "")
    if not path.startswith(PREFIX):
        return None
    provider = path[len(PREFIX) :]
    return provider if provider and "/" not in provider else None


class WebhookFastPath:
    """ASGI middleware answering webhook deliveries itself (see the module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        provider = provider_in_path(scope)
        if provider is None:
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive, MAX_WEBHOOK_BYTES)
        if body is None:
            return  # the client went away before sending the whole body: nobody to answer
        ctx: ServiceContext = scope["app"].state.ctx
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True))
        client = scope.get("client")
        headers: dict[str, str] | None = None
        try:
            reply = await accept_webhook(
                ctx,
                provider,
                {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]},
                body,
                peer=client[0] if client else None,
                job_hint=query.get("job_id"),
            )
            status = 200
        except CloudtunerError as exc:
            status, error, headers = reply_for_error(exc)
            reply = _json(error)
        except Exception as exc:
            status, error, headers = reply_for_unexpected(exc)
            reply = _json(error)
        response_headers = [(b"content-length", str(len(reply)).encode()), (b"content-type", b"application/json")]
        for name, value in (headers or {}).items():
            response_headers.append((name.lower().encode("latin-1"), value.encode("latin-1")))
        await send({"type": "http.response.start", "status": status, "headers": response_headers})
        await send({"type": "http.response.body", "body": reply})


def _json(content: dict[str, Any]) -> bytes:
    """Encode a reply as the app's JSON responses are encoded."""
    return json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """Return the request body, of which at most ``limit`` bytes are kept (the rest is read and
    dropped); None if the client disconnected first."""
    parts: list[bytes] = []
    kept = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk: bytes = message.get("body", b"")
        if kept < limit and chunk:
            parts.append(chunk[: limit - kept])
            kept += len(parts[-1])
        if not message.get("more_body", False):
            return parts[0] if len(parts) == 1 else b"".join(parts)
