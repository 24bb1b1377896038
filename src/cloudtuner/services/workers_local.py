"""The ``local`` provider's workers: ``cloudtuner worker`` processes this server starts itself.

Local jobs take the same path as remote ones: dispatch makes them available, a worker claims
them over HTTP from this server, runs the trainer and reports. The pool below starts ephemeral
worker processes (one job each) while local jobs wait, at most ``local_max_jobs`` at once
(default: one per GPU that ``nvidia-smi`` reports, else 1); each gets its own GPU through
``CUDA_VISIBLE_DEVICES``. Its worker rows are named ``local-<host>-<port>-<slot>`` and carry the
label ``cloudtuner.provider=local``, which is what lets them claim ``local`` jobs (and only those).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select

from cloudtuner.agent.gpus import detect_gpus
from cloudtuner.core.errors import WorkerNotFoundError
from cloudtuner.core.states import JobStatus
from cloudtuner.db.tables import JobRow, WorkerAssignmentRow
from cloudtuner.providers.base import CloudJobInfo, CloudJobStatus
from cloudtuner.providers.worker import WorkerProvider
from cloudtuner.schemas.workers import CreateWorkerRequest
from cloudtuner.services import workers
from cloudtuner.services.context import ServiceContext
from cloudtuner.services.workers_protocol import PROVIDER_LABEL, WorkAvailable, WorkerRuns

log = logging.getLogger(__name__)

LOCAL_PROVIDER = "local"
IDLE_EXIT_SECONDS = 5.0
"""How long the pool's loop keeps running with nothing to do before it stops (a new job restarts it)."""


def server_url(host: str, port: int) -> str:
    """Return the URL this server's own workers reach it at."""
    if host in ("0.0.0.0", "::", "", "localhost"):  # noqa: S104 - mapping a wildcard bind to loopback
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


@dataclass
class _Slot:
    name: str
    gpu: int | None
    process: subprocess.Popen[bytes] | None = None


LOCAL_STOP_GRACE_SECONDS = 5.0
"""How long a stopping server waits for its local workers before it kills them."""


class LocalWorkerPool:
    """Starts and stops this server's local worker processes; see the module docstring."""

    def __init__(self, ctx: ServiceContext) -> None:
        self._ctx = ctx
        self._slots: list[_Slot] | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._closed = False

    def kick(self) -> None:
        """Look for waiting local jobs now (starts the pool's loop if it is not running)."""
        if self._closed:
            return
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="local-workers")

    async def _make_slots(self) -> list[_Slot]:
        gpus = await asyncio.to_thread(detect_gpus)
        limit = self._ctx.settings.local_max_jobs or max(1, len(gpus))
        prefix = f"local-{socket.gethostname()[:100]}-{self._ctx.settings.port}"
        return [_Slot(name=f"{prefix}-{n + 1}", gpu=n if n < len(gpus) else None) for n in range(limit)]

    async def _waiting(self) -> int:
        query = (
            select(func.count())
            .select_from(JobRow)
            .outerjoin(WorkerAssignmentRow, WorkerAssignmentRow.job_id == JobRow.id)
            .where(
                JobRow.provider == LOCAL_PROVIDER,
                JobRow.status == JobStatus.STARTING.value,
                JobRow.provider_job_id.is_not(None),
                WorkerAssignmentRow.job_id.is_(None),
            )
        )
        async with self._ctx.db.read() as session:
            return int(await session.scalar(query) or 0)

    async def _loop(self) -> None:
        idle_since: float | None = None
        loop = asyncio.get_running_loop()
        while not self._closed:
            self._wake.clear()
            try:
                if self._slots is None:
                    self._slots = await self._make_slots()
                busy = [s for s in self._slots if s.process is not None and s.process.poll() is None]
                free = [s for s in self._slots if s not in busy]
                waiting = await self._waiting() if free else 0
                for slot in free[:waiting]:
                    await self._start(slot)
                active = bool(busy) or waiting > 0
            except Exception:
                log.exception("the local worker pool failed a round")
                active = True
            now = loop.time()
            if active:
                idle_since = None
            elif idle_since is None:
                idle_since = now
            elif now - idle_since > IDLE_EXIT_SECONDS:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=0.5)

    async def _token(self, name: str) -> str:
        base = server_url(self._ctx.settings.host, self._ctx.settings.port)
        try:
            await workers.get_worker(self._ctx, name)
            return (await workers.rotate_worker(self._ctx, name, base_url=base)).token
        except WorkerNotFoundError:
            request = CreateWorkerRequest(name=name, labels={PROVIDER_LABEL: LOCAL_PROVIDER})
            return (await workers.create_worker(self._ctx, request, base_url=base, created_by=None)).token

    async def _start(self, slot: _Slot) -> None:
        settings = self._ctx.settings
        token = await self._token(slot.name)
        work_dir = settings.data_dir / "local-workers" / slot.name
        argv = [
            sys.executable, "-m", "cloudtuner.cli.main", "worker",
            "--orchestrator-url", server_url(settings.host, settings.port),
            "--work-dir", str(work_dir), "--server-grace", "30",
        ]  # fmt: skip
        if settings.local_trainer_command:
            argv += ["--trainer-command", settings.local_trainer_command]
        env = {**os.environ, "CLOUDTUNER_WORKER_TOKEN": token}
        if slot.gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = str(slot.gpu)
        slot.process = await asyncio.to_thread(_spawn, argv, env, work_dir)
        log.info("started local worker %s (pid %s)", slot.name, slot.process.pid)

    async def aclose(self) -> None:
        """Stop the loop and the worker processes (SIGTERM: each stops its trainer and reports)."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        running = [s.process for s in self._slots or [] if s.process is not None and s.process.poll() is None]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        # The server is stopping and takes no more reports: give them a moment, then end them, so
        # that stopping the server stays quick (the jobs are recovered as their leases expire).
        deadline = time.monotonic() + LOCAL_STOP_GRACE_SECONDS
        for process in running:
            try:
                await asyncio.to_thread(process.wait, max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)


def _spawn(argv: list[str], env: dict[str, str], work_dir: Path) -> subprocess.Popen[bytes]:
    work_dir.mkdir(parents=True, exist_ok=True)
    with (work_dir / "worker.log").open("ab") as out:
        return subprocess.Popen(  # noqa: S603 - our own command line
            argv, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


class LocalRuns(WorkerRuns):
    """The ``local`` provider's view of its runs: a job waiting for a worker starts one."""

    def __init__(self, ctx: ServiceContext, work: WorkAvailable) -> None:
        super().__init__(ctx, work)
        self.pool = LocalWorkerPool(ctx)

    def notify(self) -> None:
        """Wake waiting claims and start a local worker for the new job."""
        super().notify()
        self.pool.kick()

    async def run_info(self, provider_job_id: str, job_id: str) -> CloudJobInfo:
        """Return the run; a job still waiting (after a server restart, say) starts a worker."""
        info = await super().run_info(provider_job_id, job_id)
        if info.status is CloudJobStatus.QUEUED:
            self.pool.kick()
        return info

    async def aclose(self) -> None:
        """Stop the local workers."""
        await self.pool.aclose()


def attach_worker_providers(ctx: ServiceContext) -> WorkAvailable:
    """Attach the job store to every worker provider of ``ctx`` (``local`` gets its worker pool);
    return what wakes this process's waiting claims."""
    work = WorkAvailable()
    for provider in ctx.providers:
        if isinstance(provider, WorkerProvider):
            runs = LocalRuns(ctx, work) if provider.provider_name == LOCAL_PROVIDER else WorkerRuns(ctx, work)
            provider.attach(runs)
    return work
