"""A fake Hugging Face Hub for publishing tests, driven by the real ``huggingface_hub`` client.

Start it with :class:`FakeHub` (uvicorn in a thread on 127.0.0.1, a free port) and point clients
at ``fake.url`` with ``HF_ENDPOINT`` (huggingface_hub) or ``CLOUDTUNER_HF_ENDPOINT`` (cloudtuner);
see :mod:`tests.fakes.hf_hub.app` for what it serves. ``python -m tests.fakes.hf_hub --port N``
runs it as a process and prints ``fake-hub listening on <url>``.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import uvicorn

from tests.fakes.hf_hub.app import HubConfig, HubState, build_app

__all__ = ["DEFAULT_TOKEN", "FakeHub", "HubConfig", "HubState", "build_app"]

DEFAULT_TOKEN = "hf_fakeHubToken"


class FakeHub:
    """The fake Hub served by uvicorn in a daemon thread on a loopback port."""

    def __init__(self, config: HubConfig | None = None, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.state = HubState(config)
        self._host, self._port = host, port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    def start(self, timeout: float = 10.0) -> FakeHub:
        """Serve in a background thread; return once it accepts connections."""
        config = uvicorn.Config(
            build_app(self.state), host=self._host, port=self._port, log_level="warning", access_log=False
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, name="fake-hub", daemon=True)
        self._server, self._thread = server, thread
        thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() >= deadline:
                server.should_exit = True
                raise RuntimeError("the fake Hub did not start")
            time.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://{self._host}:{port}"
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving and join the thread."""
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout)
        self._server = self._thread = None

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def repos(self) -> dict[str, Any]:
        """Return the repositories (files with sizes and SHA-256, visibility, commits)."""
        dumped: dict[str, Any] = self.state.dump()["repos"]
        return dumped


def remote_repos(url: str) -> dict[str, Any]:
    """Return the repositories of a fake Hub running elsewhere (``GET /_fake/repos``)."""
    reply = httpx.get(f"{url}/_fake/repos", timeout=10.0, trust_env=False)
    reply.raise_for_status()
    repos: dict[str, Any] = reply.json()["repos"]
    return repos
