"""Shared helpers of the benchmarks: child servers that are always stopped, ports, HTTP, statistics.

Not a benchmark itself. Every server a benchmark starts runs in its own process group and is
stopped (SIGTERM, then SIGKILL) when the ``with`` block ends, on errors and on Ctrl-C too;
readiness is polled with a deadline, never waited for with a fixed sleep.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, Any

REPO = Path(__file__).resolve().parent.parent
BENCH_DIR = REPO / "bench"
PYTHON = sys.executable
CLOUDTUNER = str(Path(sys.executable).with_name("cloudtuner"))
HOST = "127.0.0.1"
SCRIPTED_PLUGIN = "tests.fakes.scripted_provider:create"
SUBMIT_BODY: dict[str, Any] = {
    "config": {"--model_family": "flux", "--max_train_steps": 4},
    "dataloader_config": [{"id": "training-images", "type": "local", "instance_data_dir": "/data/x"}],
}


class BenchError(RuntimeError):
    """A benchmark could not run (a server did not start, a reply was wrong)."""


def stop_on_sigterm() -> None:
    """Turn SIGTERM into KeyboardInterrupt, so that ``with`` blocks stop their servers."""

    def _raise(signum: int, frame: FrameType | None) -> None:
        del signum, frame
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _raise)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def server_env(*, plugins: bool = True, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return the environment of a ``cloudtuner server`` child: quiet, scripted provider if asked."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDTUNER_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env["CLOUDTUNER_LOG_LEVEL"] = "warning"
    if plugins:
        env["CLOUDTUNER_PROVIDER_PLUGINS"] = SCRIPTED_PLUGIN
    env.pop("SCRIPTED_PROVIDER_STATE", None)
    if extra:
        env.update(extra)
    return env


def cloudtuner_server_argv(port: int, data_dir: Path) -> list[str]:
    """Return the command line of ``cloudtuner server`` on 127.0.0.1:``port``."""
    return [CLOUDTUNER, "server", "--host", HOST, "--port", str(port), "--data-dir", str(data_dir)]


class Child:
    """A child process in its own process group, stopped when the ``with`` block ends."""

    def __init__(
        self, argv: Sequence[str], *, env: Mapping[str, str] | None = None, log_path: Path, timestamps: bool = False
    ) -> None:
        self.argv = list(argv)
        self.env = dict(env) if env is not None else None
        self.log_path = log_path
        self.started_at = 0.0
        self.timestamps = timestamps
        self.lines: list[tuple[float, str]] = []
        """With ``timestamps``: each line the process printed, with seconds since it started."""
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._reader: threading.Thread | None = None

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def start(self) -> Child:
        self._log = self.log_path.open("wb")
        self.started_at = time.perf_counter()
        self._proc = subprocess.Popen(
            self.argv,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if self.timestamps else self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if self.timestamps:
            self._reader = threading.Thread(target=self._read_lines, daemon=True)
            self._reader.start()
        return self

    def _read_lines(self) -> None:
        assert self._proc is not None
        stdout, log = self._proc.stdout, self._log
        assert stdout is not None
        assert log is not None
        for raw in stdout:
            self.lines.append((time.perf_counter() - self.started_at, raw.decode(errors="replace").rstrip()))
            log.write(raw)
            log.flush()

    def line_time(self, text: str) -> float | None:
        """Return when the process printed a line containing ``text`` (needs ``timestamps``)."""
        return next((at for at, line in list(self.lines) if text in line), None)

    def exited(self) -> int | None:
        """Return the exit code if the process has ended, else None."""
        assert self._proc is not None
        return self._proc.poll()

    def output(self, limit: int = 4000) -> str:
        """Return the end of what the process printed."""
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-limit:]
        return ""

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the process group, then SIGKILL it if it has not ended within ``timeout``."""
        proc = self._proc
        if proc is None:
            return
        try:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(5)
            # Anything the process left behind in its group goes too.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        finally:
            if self._reader is not None:
                self._reader.join(5)
                self._reader = None
            if proc.stdout is not None:
                proc.stdout.close()
            if self._log is not None:
                self._log.close()
            self._proc = None

    def __enter__(self) -> Child:
        return self.start() if self._proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def http_get(port: int, path: str, timeout: float = 10.0) -> tuple[int, bytes]:
    """Return (status, body) of one GET on a new connection."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def wait_ready(
    child: Child,
    port: int,
    *,
    path: str = "/api/health",
    ok_statuses: tuple[int, ...] = (200,),
    deadline_seconds: float = 30.0,
) -> float:
    """Poll GET ``path`` until it answers 200 (or ``ok_statuses``); return seconds since the child started.

    Raises:
        BenchError: the child exited, or did not answer 200 before the deadline.
    """
    deadline = time.perf_counter() + deadline_seconds
    while True:
        code = child.exited()
        if code is not None:
            raise BenchError(f"{child.argv[0]} exited with code {code} before it was ready:\n{child.output()}")
        try:
            status, _ = http_get(port, path, timeout=2.0)
            if status in ok_statuses:
                return time.perf_counter() - child.started_at
        except (OSError, http.client.HTTPException):
            pass
        if time.perf_counter() > deadline:
            raise BenchError(f"no {ok_statuses} from {path} within {deadline_seconds:.0f} s:\n{child.output()}")
        time.sleep(0.005)


class KeepAliveClient:
    """A keep-alive HTTP/1.1 client on one connection (http.client), for sequential requests."""

    def __init__(self, port: int, timeout: float = 30.0) -> None:
        self._conn = http.client.HTTPConnection(HOST, port, timeout=timeout)

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        self._conn.request(method, path, body=body, headers=headers)
        response = self._conn.getresponse()
        return response.status, response.read()

    def get_json(self, path: str) -> Any:
        status, body = self.request("GET", path)
        if status != 200:
            raise BenchError(f"GET {path}: HTTP {status}: {body[:300]!r}")
        return json.loads(body)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> KeepAliveClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def count_jobs(port: int) -> dict[str, int]:
    """Return the number of jobs per status, by following the list endpoint's cursors."""
    counts: dict[str, int] = {}
    cursor: str | None = None
    with KeepAliveClient(port) as client:
        for _ in range(1_000_000):
            page = client.get_json("/api/cloud/jobs?limit=500" + (f"&cursor={cursor}" if cursor else ""))
            for job in page["jobs"]:
                counts[job["status"]] = counts.get(job["status"], 0) + 1
            cursor = page["next_cursor"]
            if not cursor:
                break
    return counts


# --- /proc ---------------------------------------------------------------------------------------


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    """Return a memory figure of ``/proc/<pid>/status`` (VmRSS, VmHWM, ...) in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise BenchError(f"no {field} in /proc/{pid}/status")


def cpu_seconds(pid: int) -> float:
    """Return the user + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # After the command name: state is field 3, utime field 14, stime field 15 (1-based).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- statistics ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Summary:
    """Latency figures of one series, in milliseconds."""

    count: int
    p50: float
    p95: float
    p99: float
    max: float
    mean: float


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Return the ``q``-th percentile (0-100) of sorted values, by the nearest-rank method."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def summarize(values_ms: Sequence[float]) -> Summary:
    """Return p50/p95/p99/max/mean of latencies given in milliseconds."""
    ordered = sorted(values_ms)
    mean = sum(ordered) / len(ordered) if ordered else math.nan
    return Summary(
        count=len(ordered),
        p50=percentile(ordered, 50),
        p95=percentile(ordered, 95),
        p99=percentile(ordered, 99),
        max=ordered[-1] if ordered else math.nan,
        mean=mean,
    )


def median(values: Sequence[float]) -> float:
    """Return the median (the mean of the two middle values for an even count)."""
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def load_average() -> str:
    """Return the 1, 5 and 15 minute load averages, to read noisy figures by."""
    return " ".join(f"{value:.2f}" for value in os.getloadavg()) + f" on {os.cpu_count()} CPUs"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


@contextlib.contextmanager
def scratch_dir(prefix: str, keep: bool = False) -> Iterator[Path]:
    """Yield a new temporary folder, removed afterwards unless ``keep``."""
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        if keep:
            print(f"(kept {path})")
        else:
            shutil.rmtree(path, ignore_errors=True)
