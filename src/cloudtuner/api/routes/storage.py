"""The built-in S3 endpoint at /api/cloud/storage, and its credentials API below it.

Two kinds of request share the path:

- **S3 requests** (signed with SigV4 or SigV2, in the header or presigned) go to the S3 handler
  through :class:`S3Adapter`, a raw ASGI endpoint: it passes the raw path, query, headers and the
  body *stream* to :class:`~cloudtuner.storage.S3Handler` and streams the reply back, so objects
  never sit in memory. S3 requests authenticate by their signature: the routes are public.
- **The credentials API** (``/api/cloud/storage/credentials``, JSON, ``storage.manage``). Its routes
  step aside for S3-signed requests (:class:`JsonApiRoute`), so that a bucket named
  ``credentials`` still works for S3 clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.routing import APIRoute
from starlette.responses import JSONResponse
from starlette.routing import Match, Route

from cloudtuner.api.deps import Context, requires
from cloudtuner.api.errors import error_body
from cloudtuner.core.permissions import Permission, Principal
from cloudtuner.schemas.common import ErrorResponse
from cloudtuner.schemas.storage import (
    CreateStorageCredentialRequest,
    RevokeStorageCredentialResponse,
    StorageCredentialCreatedResponse,
    StorageCredentialKind,
    StorageCredentialListResponse,
)
from cloudtuner.services import storage_credentials
from cloudtuner.services.storage_endpoint import StorageEndpoint
from cloudtuner.storage import (
    DEFAULT_MOUNT_PATH,
    ClientDisconnected,
    S3Handler,
    S3Headers,
    S3Request,
    carries_s3_signature,
)

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MOUNT_PATH = DEFAULT_MOUNT_PATH
S3_ROUTE_PATHS = (MOUNT_PATH, MOUNT_PATH + "/{path:path}")
"""The route paths of the S3 endpoint (public: requests authenticate by their signature)."""


def _is_s3_signed(scope: Scope) -> bool:
    headers = S3Headers.from_raw(scope.get("headers", ()))
    return carries_s3_signature(headers, scope.get("query_string", b"").decode("latin-1"))


class JsonApiRoute(APIRoute):
    """An API route that does not match S3-signed requests: those belong to the S3 endpoint."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        """Match as usual, except for requests signed for S3."""
        match, child_scope = super().matches(scope)
        if match is not Match.NONE and scope["type"] == "http" and _is_s3_signed(scope):
            return Match.NONE, {}
        return match, child_scope


router = APIRouter(tags=["storage"], route_class=JsonApiRoute)

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "The bucket or prefix is not valid."},
    422: {"model": ErrorResponse, "description": "A field is missing or has the wrong type."},
}
ManageStorage = Annotated[Principal, Depends(requires(Permission.STORAGE_MANAGE))]


async def get_storage_endpoint(request: Request) -> StorageEndpoint:
    """Return the app's S3 endpoint."""
    endpoint: StorageEndpoint = request.app.state.storage
    return endpoint


Endpoint = Annotated[StorageEndpoint, Depends(get_storage_endpoint)]


@router.post(
    "/api/cloud/storage/credentials",
    status_code=201,
    response_model=StorageCredentialCreatedResponse,
    responses=ERRORS,
    summary="Create a storage key",
)
async def create_credential(
    body: CreateStorageCredentialRequest, request: Request, ctx: Context, principal: ManageStorage
) -> StorageCredentialCreatedResponse:
    """Create an access key for the built-in S3 endpoint, optionally limited to a bucket and a key
    prefix and with an expiry. The reply holds the secret access key: it is shown this once."""
    return await storage_credentials.create_storage_credential(
        ctx, principal, body, request_base_url=str(request.base_url)
    )


@router.get(
    "/api/cloud/storage/credentials",
    response_model=StorageCredentialListResponse,
    responses=ERRORS,
    summary="List storage keys",
)
async def list_credentials(
    ctx: Context,
    _principal: ManageStorage,
    kind: Annotated[StorageCredentialKind | None, Query(description="Only keys of this kind.")] = None,
    include_inactive: Annotated[bool, Query(alias="all", description="Also list revoked and expired keys.")] = False,
    limit: Annotated[int, Query(ge=1, le=storage_credentials.MAX_LIST_LIMIT, description="At most this many.")] = 200,
) -> StorageCredentialListResponse:
    """The access keys of the S3 endpoint, newest first: admin keys and the keys issued to jobs.
    Secrets are never listed."""
    return await storage_credentials.list_storage_credentials(
        ctx, kind=kind, include_inactive=include_inactive, limit=limit
    )


@router.delete(
    "/api/cloud/storage/credentials/{access_key_id}",
    response_model=RevokeStorageCredentialResponse,
    responses={404: {"model": ErrorResponse, "description": "No key has that id."}},
    summary="Revoke a storage key",
)
async def revoke_credential(
    access_key_id: str, ctx: Context, endpoint: Endpoint, _principal: ManageStorage
) -> RevokeStorageCredentialResponse:
    """Revoke an access key (an admin key or a job's). Every server stops accepting it within
    `storage_credentials_cache_seconds` (2 s by default); this one at once."""
    reply = await storage_credentials.revoke_storage_credential(ctx, access_key_id)
    endpoint.resolver.forget(access_key_id)
    return reply


# --- the S3 endpoint ----------------------------------------------------------------------------


class S3Adapter:
    """Raw ASGI endpoint: translate one HTTP request to an S3Request and the S3Response back.

    It does no S3 work of its own (see :mod:`cloudtuner.storage.messages`): the path is passed
    still encoded, the body as a stream read lazily, and a streamed reply is sent chunk by chunk
    and always closed, also when the client goes away.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one request below the mount path."""
        endpoint: StorageEndpoint = scope["app"].state.storage
        located = _below_mount(scope)
        if located is None:
            reply = JSONResponse(
                error_body("There is no such route; see /docs for the API.", "route_not_found"), status_code=404
            )
            await reply(scope, receive, send)
            return
        mount_path, path = located
        await serve_s3(endpoint.handler, scope, receive, send, mount_path=mount_path, path=path)


async def serve_s3(
    handler: S3Handler, scope: Scope, receive: Receive, send: Send, *, mount_path: str, path: str
) -> None:
    """Serve one ASGI request for ``path`` (still encoded, below ``mount_path``) with ``handler``:
    the body is passed as a stream read lazily, and a streamed reply is sent chunk by chunk and
    always closed, also when the client goes away."""

    async def body() -> AsyncIterator[bytes]:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnected
            chunk = message.get("body", b"")
            if chunk:
                yield chunk
            if not message.get("more_body", False):
                return

    request = S3Request(
        method=scope["method"],
        path=path,
        query=scope.get("query_string", b"").decode("latin-1"),
        headers=S3Headers.from_raw(scope["headers"]),
        body=body(),
        mount_path=mount_path,
    )
    response = await handler.handle(request)
    headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in response.headers]
    try:
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        if isinstance(response.body, bytes):
            await send({"type": "http.response.body", "body": response.body})
        elif not await _send_stream(response.body, receive, send):
            log.info("S3 %s %s: the client went away during the reply", request.method, path)
    except OSError:
        # The client went away while the reply was being sent (ASGI 2.4 servers raise OSError).
        log.info("S3 %s %s: the client went away during the reply", request.method, path)
    finally:
        await response.aclose()


async def _send_stream(body: AsyncIterator[bytes], receive: Receive, send: Send) -> bool:
    """Send a streamed reply body; stop reading it as soon as the client disconnects.

    Only called once the handler is done with the request body, so what ``receive`` yields now is
    the end of the request or the disconnect (servers before ASGI 2.4 drop writes to a closed
    connection silently: without this watch a dropped download would read its whole file).
    Returns whether the body was sent whole.
    """
    gone = asyncio.Event()

    async def watch() -> None:
        try:
            while (await receive())["type"] != "http.disconnect":
                pass
        except OSError:
            pass
        gone.set()

    watcher = asyncio.create_task(watch())
    try:
        async for chunk in body:
            if gone.is_set():
                return False
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return True
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher


def _below_mount(scope: Scope) -> tuple[str, str] | None:
    """Return (the mount path the client used, the raw path below it), or None if not below it."""
    raw = scope.get("raw_path")
    raw_path = raw.decode("latin-1") if raw else scope["path"]
    root_path = scope.get("root_path", "")
    mount_path = root_path + MOUNT_PATH
    if root_path and raw_path.startswith(mount_path):
        below = raw_path[len(mount_path) :]
    elif raw_path.startswith(MOUNT_PATH):
        below = raw_path[len(MOUNT_PATH) :]
    else:
        return None
    if below and not below.startswith("/"):
        return None
    return mount_path, below


def s3_routes() -> list[Route]:
    """Return the routes of the S3 endpoint; add them after the credentials API's routes."""
    adapter = S3Adapter()
    return [Route(path, adapter, include_in_schema=False) for path in S3_ROUTE_PATHS]
