"""The e2e harness: real `cloudtuner` server processes on 127.0.0.1, and the CLI as a subprocess.

Each server runs as ``cloudtuner server --host 127.0.0.1 --port <free> --data-dir <tmp>`` with the
scripted provider loaded as a plugin, its "remote" state in a JSON file that outlives the process.
Its output goes to a log file, attached to the report of a test that fails (see conftest.py).
Every wait is a poll with a deadline; every process a test starts is killed when the test ends.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.integration.conftest import INLINE_JOB, inline_job
from tests.support.waiting import wait_until_sync

__all__ = [
    "INLINE_JOB",
    "TERMINAL",
    "CliResult",
    "ServerFactory",
    "ServerProcess",
    "assert_one_line_error",
    "clean_env",
    "free_port",
    "inline_job",
    "is_listening",
    "run_cli",
    "run_process",
    "runs_for",
    "scripted_runs",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
CLI_SCRIPT = Path(sys.executable).with_name("cloudtuner")
SERVER_START_TIMEOUT = 30.0
SERVER_STOP_TIMEOUT = 15.0
TERMINAL = frozenset({"completed", "failed", "cancelled"})


# --- processes and ports ------------------------------------------------------------------------


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def is_listening(port: int) -> bool:
    """Return True if something accepts connections on 127.0.0.1:``port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def clean_env(**extra: str) -> dict[str, str]:
    """Return the environment for a child process: no cloudtuner settings or proxies from outside."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("CLOUDTUNER_") and name.lower() not in ("http_proxy", "https_proxy", "all_proxy")
    }
    env.update({"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost", "COLUMNS": "200"})
    env.update(extra)
    return env


def cli_command() -> list[str]:
    """Return the argv prefix that runs the `cloudtuner` command of this virtualenv."""
    if CLI_SCRIPT.is_file():
        return [str(CLI_SCRIPT)]
    return [sys.executable, "-m", "cloudtuner.cli.main"]


def describe_exit(code: int) -> str:
    """Return an exit code as a phrase: "2", or "-15 (killed by SIGTERM)"."""
    if code < 0:
        return f"{code} (killed by {signal.Signals(-code).name})"
    return str(code)


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """Kill a process we started (and its process group) and reap it."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)


# --- the CLI ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CliResult:
    """What one `cloudtuner` invocation did."""

    args: tuple[str, ...]
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        """Return stdout parsed as JSON."""
        return json.loads(self.stdout)

    def describe(self) -> str:
        """Return everything about the run, for assertion messages."""
        return f"cloudtuner {' '.join(self.args)} -> {self.code}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


def run_cli(
    *args: str,
    url: str | None = None,
    cwd: Path | None = None,
    timeout: float = 60.0,
    expect: int | None = 0,
) -> CliResult:
    """Run `cloudtuner ARGS...` against ``url`` (CLOUDTUNER_URL) and return what it did.

    ``expect`` is the exit code the caller requires (None: any); a mismatch fails the test with
    the command's output. No run may print a Python traceback.
    """
    env = clean_env(**({"CLOUDTUNER_URL": url} if url else {}))
    return checked_cli(args, run_process([*cli_command(), *args], env=env, timeout=timeout, cwd=cwd), expect)


def checked_cli(args: Sequence[str], result: CliResult, expect: int | None) -> CliResult:
    """Return ``result`` as the run of `cloudtuner ARGS...`, after checking it printed no traceback
    and, unless ``expect`` is None, exited with ``expect``."""
    result = dataclasses.replace(result, args=tuple(args))
    assert "Traceback" not in result.stdout + result.stderr, result.describe()
    if expect is not None:
        assert result.code == expect, result.describe()
    return result


def assert_one_line_error(result: CliResult) -> str:
    """Check a failed CLI run printed exactly one ``error:`` line on stderr; return it."""
    assert result.code != 0, result.describe()
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.describe()
    assert lines[0].startswith("error:"), result.describe()
    assert "Traceback" not in result.stdout + result.stderr, result.describe()
    return lines[0]


# --- the scripted provider's state --------------------------------------------------------------


def scripted_runs(state_path: Path) -> list[dict[str, Any]]:
    """Return every run the scripted provider holds in ``state_path`` (written atomically)."""
    if not state_path.exists():
        return []
    state = json.loads(state_path.read_text())
    return list(state.get("runs", {}).values())


def runs_for(state_path: Path, job_id: str) -> list[dict[str, Any]]:
    """Return the scripted provider's runs made for one cloudtuner job."""
    return [run for run in scripted_runs(state_path) if run.get("reference") == job_id]


# --- servers ------------------------------------------------------------------------------------


@dataclass
class ServerProcess:
    """One `cloudtuner server` process; can be stopped and started again on the same data dir."""

    name: str
    data_dir: Path
    state_path: Path
    log_path: Path
    database_url: str | None
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    extra_env: dict[str, str] = field(default_factory=dict)
    """More environment for the process (applied last, so it can override the defaults above)."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [
            *cli_command(),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
        ]

    def env(self) -> dict[str, str]:
        values = {
            "PYTHONPATH": str(REPO_ROOT),
            "CLOUDTUNER_PROVIDER_PLUGINS": "tests.fakes.scripted_provider:create",
            "SCRIPTED_PROVIDER_STATE": str(self.state_path),
            "CLOUDTUNER_RECONCILE_INTERVAL_SECONDS": "0.2",
            "CLOUDTUNER_DISPATCH_INTERVAL_SECONDS": "0.2",
            "CLOUDTUNER_LEASE_SECONDS": "3",
        }
        if self.database_url is not None:
            values["CLOUDTUNER_DATABASE_URL"] = self.database_url
        values.update(self.extra_env)
        return clean_env(**values)

    def launch(self) -> None:
        """Start the process (without waiting for it to be ready); its output goes to the log."""
        assert self.process is None or self.process.poll() is not None, f"{self.name} is already running"
        self.starts += 1
        with self.log_path.open("ab") as log:
            log.write(f"===== start {self.starts}: {' '.join(self.command())}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                self.command(),
                cwd=REPO_ROOT,
                env=self.env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self, timeout: float = SERVER_START_TIMEOUT) -> None:
        """Poll GET /api/health until it answers 200; fail at once if the process exits."""

        def probe() -> int | str:
            assert self.process is not None
            code = self.process.poll()
            if code is not None:
                raise AssertionError(f"server {self.name} exited with {describe_exit(code)} before it was ready")
            try:
                return httpx.get(f"{self.url}/api/health", timeout=2.0, trust_env=False).status_code
            except httpx.HTTPError as exc:
                return type(exc).__name__

        wait_until_sync(probe, lambda status: status == 200, timeout=timeout, interval=0.1)

    def start(self) -> ServerProcess:
        """Start the server and wait until it is ready."""
        self.launch()
        self.wait_ready()
        return self

    def wait_exit(self, timeout: float) -> int:
        """Wait for the process to end by itself; return its exit code."""
        assert self.process is not None
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"server {self.name} did not exit within {timeout} s") from None

    def stop(self, timeout: float = SERVER_STOP_TIMEOUT) -> int:
        """Send SIGTERM, wait for the process to end, and check it exited with 0."""
        assert self.process is not None and self.process.poll() is None, f"server {self.name} is not running"
        self.process.send_signal(signal.SIGTERM)
        code = self.wait_exit(timeout)
        assert code == 0, f"server {self.name} exited with {describe_exit(code)} after SIGTERM, not 0"
        return code

    def kill(self) -> None:
        """Kill the process if it still runs (cleanup; no checks)."""
        if self.process is not None:
            _kill_group(self.process)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else "(no log)"

    # --- HTTP helpers ---------------------------------------------------------------------------

    def http(self) -> httpx.Client:
        """Return an HTTP client for this server (close it after use)."""
        return httpx.Client(base_url=self.url, timeout=10.0, trust_env=False)

    def submit(self, body: dict[str, Any], provider: str = "scripted") -> str:
        """Submit a job over HTTP; return its id."""
        with self.http() as http:
            reply = http.post("/api/cloud/jobs/submit", params={"provider": provider}, json=body)
        assert reply.status_code == 202, reply.text
        job_id: str = reply.json()["job_id"]
        return job_id

    def job(self, job_id: str) -> dict[str, Any]:
        """Return GET /api/cloud/jobs/{id}'s job."""
        with self.http() as http:
            reply = http.get(f"/api/cloud/jobs/{job_id}")
        assert reply.status_code == 200, reply.text
        job: dict[str, Any] = reply.json()["job"]
        return job

    def wait_for_status(self, job_id: str, *statuses: str, timeout: float = 30.0) -> dict[str, Any]:
        """Poll the job until its status is one of ``statuses``; fail early on another final state."""
        wanted = set(statuses)

        def accept(job: dict[str, Any]) -> bool:
            if job["status"] in TERMINAL and job["status"] not in wanted:
                raise AssertionError(f"job {job_id} ended {job['status']}, expected {sorted(wanted)}: {job}")
            return job["status"] in wanted

        return wait_until_sync(lambda: self.job(job_id), accept, timeout=timeout, interval=0.1)


class ServerFactory:
    """Makes the servers of one test and kills whatever still runs when it ends.

    Failure messages name the server; its whole log is attached to the failed test's report by
    the ``pytest_runtest_makereport`` hook in conftest.py.
    """

    def __init__(self, root: Path, database_url: str | None) -> None:
        self.root = root
        self.database_url = database_url
        self.servers: list[ServerProcess] = []

    def create(
        self,
        name: str = "server",
        *,
        state_path: Path | None = None,
        database_url: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> ServerProcess:
        """Return a server with its own data dir and log (not started yet); ``env`` adds to its
        environment (see :attr:`ServerProcess.extra_env`)."""
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        taken = {server.port for server in self.servers}
        port = wait_until_sync(free_port, lambda candidate: candidate not in taken, timeout=5, interval=0)
        server = ServerProcess(
            port=port,
            name=name,
            data_dir=folder / "data",
            state_path=state_path or self.root / "scripted.json",
            log_path=folder / "server.log",
            database_url=database_url if database_url is not None else self.database_url,
            extra_env=dict(env or {}),
        )
        self.servers.append(server)
        return server

    def start(self, name: str = "server", **options: Any) -> ServerProcess:
        """Create a server and start it."""
        return self.create(name, **options).start()

    def close(self) -> None:
        for server in self.servers:
            server.kill()

    def logs(self) -> list[tuple[str, str]]:
        return [(f"server {s.name} log ({s.log_path})", s.log_text()) for s in self.servers]


def run_process(
    argv: Sequence[str], *, env: dict[str, str], timeout: float, cwd: Path | None = None, stdin: str | None = None
) -> CliResult:
    """Run any command (curl, bash) with a deadline, ``stdin`` as its input (else none); return
    its code and output."""
    feed: dict[str, Any] = {"stdin": subprocess.DEVNULL} if stdin is None else {"input": stdin.encode()}
    completed = subprocess.run(list(argv), env=env, cwd=cwd, capture_output=True, timeout=timeout, check=False, **feed)
    return CliResult(
        args=tuple(argv),
        code=completed.returncode,
        stdout=completed.stdout.decode(errors="replace"),
        stderr=completed.stderr.decode(errors="replace"),
    )
