"""A test-only raw ASGI app that mounts the S3 handler at /api/cloud/storage, and a uvicorn runner.

It serves requests below the mount path with the real route's translation
(``api.routes.storage.serve_s3``), without the rest of the app.
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

import uvicorn

from cloudtuner.api.routes.storage import serve_s3
from cloudtuner.storage import S3Handler
from tests.support.waiting import wait_until_sync

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MOUNT = "/api/cloud/storage"


def make_app(handler: S3Handler, mount: str = MOUNT) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """Return an ASGI app serving ``handler`` below ``mount`` (404 elsewhere)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        raw_path = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
        if raw_path != mount and not raw_path.startswith(mount + "/"):
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return

        await serve_s3(handler, scope, receive, send, mount_path=mount, path=raw_path[len(mount) :])

    return app


@dataclass
class RunningServer:
    """A uvicorn server on 127.0.0.1 in a background thread."""

    server: uvicorn.Server
    thread: threading.Thread
    port: int
    scheme: str

    @property
    def endpoint(self) -> str:
        """The S3 endpoint URL to give clients."""
        return f"{self.scheme}://127.0.0.1:{self.port}{MOUNT}"

    def stop(self) -> None:
        """Ask the server to exit and wait for its thread (bounded)."""
        self.server.should_exit = True
        self.thread.join(timeout=10)


def start_server(app: Any, *, ssl_certfile: str | None = None, ssl_keyfile: str | None = None) -> RunningServer:
    """Serve ``app`` on a free port of 127.0.0.1; return once it accepts connections."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        log_level="warning",
        lifespan="off",
        timeout_graceful_shutdown=3,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
        ssl_version=ssl.PROTOCOL_TLS_SERVER,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_until_sync(lambda: server.started, bool, timeout=15)
    return RunningServer(server, thread, port, "https" if ssl_certfile else "http")
