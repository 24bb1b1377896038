"""The `cloudtuner server` process itself: how it stops, and the addresses it refuses."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import httpx

from tests.e2e.harness import REPO_ROOT, ServerFactory, clean_env, cli_command, free_port, is_listening


def test_server_refuses_to_listen_on_all_interfaces(tmp_path: Path) -> None:
    port = free_port()
    command = [*cli_command(), "server", "--host", "0.0.0.0", "--port", str(port), "--data-dir", str(tmp_path / "data")]
    env = clean_env(
        PYTHONPATH=str(REPO_ROOT),
        CLOUDTUNER_PROVIDER_PLUGINS="tests.fakes.scripted_provider:create",
        SCRIPTED_PROVIDER_STATE=str(tmp_path / "scripted.json"),
    )
    process = subprocess.Popen(
        command, env=env, cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        try:
            stdout, stderr = process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            listening = is_listening(port)
            raise AssertionError(f"the server did not exit within 20 s (listening on {port}: {listening})") from None
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=10)

    err = stderr.decode()
    assert process.returncode == 2, (process.returncode, stdout, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: Refusing to listen on 0.0.0.0"), err
    assert "Traceback" not in err + stdout.decode()
    assert not is_listening(port)


def test_sigterm_stops_the_server_with_exit_code_0(servers: ServerFactory) -> None:
    server = servers.start()
    assert server.process is not None
    server.stop()  # SIGTERM, then the exit code must be 0
    assert "Application shutdown complete" in server.log_text()
    assert not is_listening(server.port)


def test_sigterm_does_not_wait_for_event_streams_or_long_polling_workers(servers: ServerFactory) -> None:
    """An open event stream (the web UI) and a worker's claim waiting for a job never end on their
    own; SIGTERM still stops the server within seconds, with exit code 0."""
    server = servers.start()
    with server.http() as http:
        token = http.post("/api/admin/workers", json={"name": "idle-box"}).json()["token"]
    headers = {"Authorization": f"Bearer {token}"}
    with (
        httpx.Client(base_url=server.url, timeout=60.0, trust_env=False) as stream_client,
        stream_client.stream("GET", "/api/cloud/events") as events,
    ):
        assert events.status_code == 200
        waiting = threading.Thread(
            target=lambda: httpx.post(
                f"{server.url}/api/worker/claim", json={"wait_seconds": 60}, headers=headers, timeout=60.0
            ),
            daemon=True,
        )
        waiting.start()
        time.sleep(0.5)  # both requests are in flight now
        started = time.monotonic()
        server.stop(timeout=15)
        assert time.monotonic() - started < 10
    assert not is_listening(server.port)
