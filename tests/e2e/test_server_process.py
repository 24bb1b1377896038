"""The `cloudtuner server` process itself: how it stops, and the addresses it refuses."""

from __future__ import annotations

import subprocess
from pathlib import Path

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
