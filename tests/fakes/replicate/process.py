"""Run the fake as a separate process (``python -m tests.fakes.replicate``) and control it remotely.

:func:`spawn` starts the process on a loopback port, reads the ``listening on <url>`` line it
prints (with a deadline), and returns a :class:`FakeProcess` whose ``remote`` is a
:class:`.api.FakeReplicateRemote`.  ``stop()`` terminates the process it started, and kills it only
if it does not exit in time.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

from .api import FakeReplicateRemote

READY_PREFIX = "fake-replicate listening on "
REPO_ROOT = Path(__file__).resolve().parents[3]


class FakeProcess:
    """A running fake process; ``base_url`` ends in ``/v1``."""

    def __init__(self, proc: subprocess.Popen[str], base_url: str) -> None:
        self.proc = proc
        self.base_url = base_url
        self.remote = FakeReplicateRemote(base_url)

    def stop(self, timeout: float = 10.0) -> int:
        """Terminate the process (SIGTERM, then SIGKILL after ``timeout``); returns its exit code."""
        self.remote.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return int(self.proc.returncode)

    def __enter__(self) -> FakeProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _read_ready_line(stream: IO[str], proc: subprocess.Popen[str], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([stream], [], [], left)
        if not ready:
            break
        line = stream.readline()
        if not line:
            break
        seen.append(line)
        if line.startswith(READY_PREFIX):
            return line[len(READY_PREFIX) :].strip()
    proc.kill()
    proc.wait(5)
    raise RuntimeError(f"fake Replicate process did not start; output: {''.join(seen)!r}")


def spawn(port: int = 0, *, config: dict[str, Any] | None = None, timeout: float = 20.0) -> FakeProcess:
    """Start ``python -m tests.fakes.replicate --port <port>`` with an optional config patch."""
    args = [sys.executable, "-m", "tests.fakes.replicate", "--port", str(port)]
    if config:
        args += ["--config", json.dumps(config)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(args, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    return FakeProcess(proc, _read_ready_line(proc.stdout, proc, timeout))
