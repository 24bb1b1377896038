"""The live feed behind the web UI, over plain HTTP: ``GET /api/cloud/events`` (server-sent events).

Read with httpx's streaming client from a real server process: a job's state changes arrive in
order with its list view, updates carry progress and log growth, a reconnect with
``Last-Event-ID`` resumes without a gap, and a server asked to stop ends its open streams and
exits at once (uvicorn would otherwise wait for them).
"""

from __future__ import annotations

import json
import queue
import threading
import time
from typing import Any

import httpx

from tests.e2e.harness import ServerFactory, ServerProcess, inline_job


class Feed:
    """Reads one event stream in a thread; events are ``(event, id, data)`` tuples."""

    def __init__(self, server: ServerProcess, headers: dict[str, str] | None = None) -> None:
        self.events: queue.Queue[tuple[str, int, dict[str, Any]]] = queue.Queue()
        self.ended = threading.Event()
        self._client = httpx.Client(base_url=server.url, trust_env=False, timeout=httpx.Timeout(10.0, read=60.0))
        self._thread = threading.Thread(target=self._read, args=(headers or {},), daemon=True)
        self._thread.start()

    def _read(self, headers: dict[str, str]) -> None:
        try:
            with self._client.stream("GET", "/api/cloud/events", headers=headers) as reply:
                assert reply.status_code == 200, reply.read()
                assert reply.headers["content-type"].startswith("text/event-stream")
                fields: dict[str, str] = {}
                for line in reply.iter_lines():
                    if not line:
                        if "data" in fields:
                            self.events.put((fields.get("event", ""), int(fields["id"]), json.loads(fields["data"])))
                        fields = {}
                    elif not line.startswith(":") and ":" in line:
                        name, _, value = line.partition(":")
                        fields[name] = value.strip()
        except httpx.HTTPError:
            pass
        finally:
            self.ended.set()

    def next(self, accept: Any, timeout: float = 20.0) -> tuple[str, int, dict[str, Any]]:
        """Return the first event ``accept`` takes, waiting at most ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                event = self.events.get(timeout=left)
            except queue.Empty:
                break
            if accept(event):
                return event
        raise AssertionError(f"no such event within {timeout} s")

    def close(self) -> None:
        self._client.close()


def test_state_changes_and_updates_arrive_in_order(servers: ServerFactory) -> None:
    server = servers.start()
    stream = Feed(server)
    try:
        _, cursor, ready = stream.next(lambda e: e[0] == "ready")
        assert ready["cursor"] == cursor and ready["poll_seconds"] > 0
        job_id = server.submit(inline_job(**{"--scripted_seconds": 1.5}) | {"tracker_run_name": "feed-run"})
        states = []
        last_id = cursor
        while "completed" not in states:
            _, event_id, data = stream.next(lambda e: e[0] == "status" and e[2]["job_id"] == job_id)
            assert event_id > last_id, (event_id, last_id)
            last_id = event_id
            assert data["job"]["job_id"] == job_id and data["job"]["tracker_run_name"] == "feed-run", data
            assert data["job"]["status"] in {"queued", "uploading", "starting", "running", "completed"}, data
            states.append(data["to_status"])
        assert states[0] == "queued" and states[-1] == "completed", states
        assert states == sorted(states, key=["queued", "uploading", "starting", "running", "completed"].index)
    finally:
        stream.close()

    # A reconnect with Last-Event-ID replays what came after it, and nothing before.
    resumed = Feed(server, {"Last-Event-ID": str(cursor)})
    try:
        _, _, ready = resumed.next(lambda e: e[0] == "ready")
        assert ready["cursor"] == cursor
        _, _, first = resumed.next(lambda e: e[0] == "status")
        assert first["job_id"] == job_id and first["to_status"] == "queued", first
    finally:
        resumed.close()


def test_stopping_the_server_ends_open_streams(servers: ServerFactory) -> None:
    server = servers.start()
    stream = Feed(server)
    try:
        stream.next(lambda e: e[0] == "ready")
        began = time.monotonic()
        server.stop(timeout=10.0)  # SIGTERM; asserts exit code 0
        assert time.monotonic() - began < 5.0
        assert stream.ended.wait(5.0)
    finally:
        stream.close()
