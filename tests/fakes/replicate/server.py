"""The ASGI app of the fake and :class:`FakeReplicate`, which runs it in a background thread.

Usage::

    with FakeReplicate() as fake:          # binds 127.0.0.1 on a free port
        client = httpx.Client(base_url=fake.base_url,
                              headers={"Authorization": f"Bearer {fake.token}"})
        ...

``fake.base_url`` ends in ``/v1`` (the value for ``CLOUDTUNER_REPLICATE_API_URL``);
``fake.root_url`` is the origin for ``replicate.Client(base_url=...)``.  With ``ssl_certfile`` and
``ssl_keyfile`` (PEM) it serves HTTPS, and both URLs start with ``https://``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from . import routes_api, routes_runs
from .api import FakeControl, Params
from .config import FakeConfig
from .control import ControlOps, control_routes
from .middleware import ASGIApp, FakeMiddleware
from .state import FakeState
from .util import NOT_FOUND, problem
from .webhooks import WebhookDispatcher, is_loopback_url

log = logging.getLogger("tests.fakes.replicate")


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if status == 404:
        return problem(NOT_FOUND)
    return problem({"title": "Error", "detail": str(getattr(exc, "detail", exc)), "status": status})


async def _ticker(state: FakeState, dispatcher: WebhookDispatcher) -> None:
    """Advance runs and hand due webhook messages to the dispatcher, every ``tick_seconds``."""
    while True:
        try:
            for message in state.tick():
                dispatcher.submit(message)
            dispatcher.poll()
        except Exception:
            log.exception("fake Replicate tick failed")
        await asyncio.sleep(state.config.tick_seconds)


def build_app(state: FakeState) -> tuple[ASGIApp, ControlOps]:
    """The ASGI callable to serve (middleware around the Starlette app) and its control ops.

    The app's lifespan starts the ticker and the webhook client, so serve it with lifespan on.
    """
    dispatcher = WebhookDispatcher(lambda: state.config, state.faults, lambda: state.generation)
    ops = ControlOps(state, dispatcher)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await dispatcher.start()
        task = asyncio.create_task(_ticker(state, dispatcher))
        try:
            yield
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await dispatcher.stop()

    app = Starlette(
        routes=[*routes_api.ROUTES, *routes_runs.ROUTES, *control_routes(ops)],
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error},
    )
    app.state.fake = state
    return FakeMiddleware(app, state), ops


def bind_loopback(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A bound (not yet listening) TCP socket on a loopback ``host``; port 0 picks a free one."""
    if not is_loopback_url(f"http://{host}/"):
        raise ValueError(f"the fake only binds loopback addresses, not {host!r}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def base_url_for(sock: socket.socket, scheme: str = "http") -> str:
    """``<scheme>://<host>:<port>/v1`` of a bound socket."""
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}:{port}/v1"


class FakeReplicate(FakeControl):
    """A fake Replicate API served by uvicorn in a daemon thread on a loopback port.

    ``start()`` returns once the server accepts connections (or raises ``RuntimeError``);
    ``stop()`` shuts it down.  ``state`` is the live :class:`FakeState` for direct inspection.
    Control helpers (faults, scripts, introspection) come from :class:`FakeControl`.
    """

    def __init__(
        self,
        config: FakeConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        log_level: str = "warning",
        ssl_certfile: str | None = None,
        ssl_keyfile: str | None = None,
    ) -> None:
        if (ssl_certfile is None) != (ssl_keyfile is None):
            raise ValueError("HTTPS needs both ssl_certfile and ssl_keyfile")
        self.state = FakeState(config)
        self.app, self.ops = build_app(self.state)
        self._host, self._port, self._log_level = host, port, log_level
        self._ssl_certfile, self._ssl_keyfile = ssl_certfile, ssl_keyfile
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return self.state.root

    def start(self, timeout: float = 10.0) -> FakeReplicate:
        """Bind, serve in a background thread and wait (with ``timeout``) until it is up."""
        if self._server is not None:
            raise RuntimeError("fake already started")
        sock = bind_loopback(self._host, self._port)
        self.state.root = base_url_for(sock, "https" if self._ssl_certfile else "http")
        config = uvicorn.Config(
            self.app,
            log_level=self._log_level,
            lifespan="on",
            timeout_graceful_shutdown=1,
            access_log=False,
            ssl_certfile=self._ssl_certfile,
            ssl_keyfile=self._ssl_keyfile,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="fake-replicate", daemon=True)
        self._server, self._thread = server, thread
        thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() >= deadline:
                server.should_exit = True
                sock.close()
                raise RuntimeError("fake Replicate server did not start")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the server to exit and join its thread (bounded by ``timeout``)."""
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(timeout)
        self._server = self._thread = None

    def __enter__(self) -> FakeReplicate:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _call(self, op: str, *, path: Params | None = None, query: Params | None = None, body: Any = None) -> Any:
        """Run the operation directly, with JSON round trips so results are detached copies."""
        detached = None if body is None else json.loads(json.dumps(body))
        return json.loads(json.dumps(self.ops.call(op, path or {}, query or {}, detached)))
