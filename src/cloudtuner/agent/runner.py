"""The worker loop: register, long-poll, run each job's trainer under supervision, report.

Guarantees:

* Cancel (or a lost lease) reaches the trainer within one heartbeat: SIGTERM to its process
  group, then SIGKILL after ``kill_grace_seconds``.
* A worker that cannot reach the server for ``server_grace_seconds`` stops its trainer, so no
  orphan keeps a GPU busy; the server requeues the job when the lease runs out.
* SIGTERM/SIGINT to the worker stops the trainer and reports the job failed ("the worker was
  stopped"); a worker that died instead gives its old jobs up when it registers again.
* An ephemeral worker (the default) exits after one job; ``persistent`` keeps going; a draining
  worker exits once its current job is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from cloudtuner.agent.gpus import detect_gpus
from cloudtuner.agent.protocol import ServerRefusedError, WorkerClient
from cloudtuner.agent.s3 import upload_tree
from cloudtuner.agent.staging import rewrite_dataloader, unpack, write_trainer_files
from cloudtuner.schemas.workers import ClaimedJob, ClaimResponse, RegisterWorkerRequest

log = logging.getLogger("cloudtuner.worker")

DEFAULT_TRAINER_COMMAND = f"{shlex.quote(sys.executable)} -m simpletuner.train"


@dataclass
class AgentOptions:
    """How a worker runs (the ``cloudtuner worker`` options)."""

    orchestrator_url: str
    token: str
    persistent: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    trainer_command: str = DEFAULT_TRAINER_COMMAND
    work_dir: Path = field(default_factory=lambda: Path.home() / ".cloudtuner" / "worker")
    poll_seconds: float = 20.0
    server_grace_seconds: float = 30.0
    kill_grace_seconds: float = 10.0
    log_flush_seconds: float = 0.5
    keep_staging: bool = False


@dataclass
class _Run:
    """What the supervision tasks share while one trainer runs."""

    job: ClaimedJob
    process: asyncio.subprocess.Process
    buffer: list[str] = field(default_factory=list)
    tail: list[str] = field(default_factory=list)
    stop_reason: str | None = None
    lost_server: bool = False
    stopping: asyncio.Event = field(default_factory=asyncio.Event)


class Agent:
    """One worker process; see the module docstring."""

    def __init__(self, options: AgentOptions, client: WorkerClient | None = None) -> None:
        self.options = options
        self.client = client or WorkerClient(options.orchestrator_url, options.token)
        self.shutdown = asyncio.Event()
        self.drain = False

    async def run(self) -> int:
        """Serve jobs until done (ephemeral), drained or stopped; return the exit code."""
        try:
            await self._register()
            while not self.shutdown.is_set():
                try:
                    reply = await self._claim()
                    if reply is None:
                        return 0
                except httpx.HTTPError as exc:
                    log.warning("cannot reach the server (%s); retrying", exc)
                    await self._pause(1.0)
                    continue
                except ServerRefusedError as exc:
                    if exc.status in (401, 403):
                        raise
                    log.warning("the server failed a claim (%s); retrying", exc)
                    await self._pause(1.0)
                    continue
                if reply.drain:
                    log.info("drained: exiting")
                    return 0
                if reply.job is None:
                    continue
                await self.run_job(reply.job)
                if not self.options.persistent or self.drain:
                    return 0
            return 0
        except ServerRefusedError as exc:
            log.error("the server refused this worker: %s", exc)
            return 2
        finally:
            await self.client.aclose()

    async def _claim(self) -> ClaimResponse | None:
        """Long-poll for a job; None if the worker was told to stop meanwhile."""
        claim = asyncio.create_task(self.client.claim(self.options.poll_seconds))
        stop = asyncio.create_task(self.shutdown.wait())
        await asyncio.wait({claim, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if self.shutdown.is_set():
            claim.cancel()
            with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError, ServerRefusedError):
                await claim
            return None
        return claim.result()

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.shutdown.wait(), timeout=seconds)

    async def _register(self) -> None:
        request = RegisterWorkerRequest(
            gpus=await asyncio.to_thread(detect_gpus),
            labels=self.options.labels,
            hostname=socket.gethostname()[:255],
            persistent=self.options.persistent,
        )
        deadline = time.monotonic() + self.options.server_grace_seconds
        while True:
            try:
                reply = await self.client.register(request)
                break
            except httpx.HTTPError as exc:
                if time.monotonic() > deadline:
                    raise ServerRefusedError(0, f"cannot reach {self.options.orchestrator_url}: {exc}") from exc
                await self._pause(0.5)
        if reply.abandoned_job_ids:
            log.warning("gave up jobs held before a restart: %s", ", ".join(reply.abandoned_job_ids))
        log.info("registered as %s (%s)", reply.name, reply.worker_id)

    # --- one job --------------------------------------------------------------------------------

    async def run_job(self, job: ClaimedJob) -> None:
        """Stage, train, upload and report one claimed job."""
        staging = self.options.work_dir / job.job_id
        log.info("running job %s in %s", job.job_id, staging)
        try:
            config_path, output = await self._stage(job, staging)
            run = await self._start(job, config_path, output)
        except ServerRefusedError as exc:
            log.warning("job %s: %s", job.job_id, exc)
            return
        except Exception as exc:
            await self._report(job, "failed", error=f"The worker could not prepare the job: {exc}")
            return
        code = await self._supervise(run)
        await self._finish(run, code, output)

    async def _stage(self, job: ClaimedJob, staging: Path) -> tuple[Path, Path]:
        await asyncio.to_thread(staging.mkdir, parents=True, exist_ok=True)
        dataloader = job.dataloader_config
        if job.has_datasets:
            archive = staging / "datasets.zip"
            dataloader, root = await self.client.fetch_datasets(job.job_id, job.lease_token, archive)
            await asyncio.to_thread(unpack, archive, staging / "datasets")
            archive.unlink()
            dataloader = rewrite_dataloader(dataloader, root, str(staging / "datasets"))
        config_path, _backend, output = await asyncio.to_thread(write_trainer_files, staging, job.config, dataloader)
        return config_path, output

    async def _start(self, job: ClaimedJob, config_path: Path, output: Path) -> _Run:
        env = {
            **os.environ,
            "CONFIG_PATH": str(config_path),
            "SIMPLETUNER_CONFIG_BACKEND": "json",
            "CLOUDTUNER_JOB_ID": job.job_id,
            "CLOUDTUNER_OUTPUT_DIR": str(output),
            "PYTHONUNBUFFERED": "1",
        }
        process = await asyncio.create_subprocess_exec(
            *shlex.split(self.options.trainer_command),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
            cwd=str(config_path.parent),
            start_new_session=True,
        )
        log.info("job %s: trainer started (pid %s)", job.job_id, process.pid)
        return _Run(job=job, process=process)

    async def _supervise(self, run: _Run) -> int:
        tasks = [
            asyncio.create_task(self._read(run)),
            asyncio.create_task(self._flush_logs(run)),
            asyncio.create_task(self._heartbeat(run)),
            asyncio.create_task(self._watch_shutdown(run)),
        ]
        code = await run.process.wait()
        run.stopping.set()
        await tasks[0]
        for task in tasks[1:]:
            task.cancel()
        for task in tasks[1:]:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._send_logs(run)
        return code

    async def _read(self, run: _Run) -> None:
        stream = run.process.stdout
        if stream is None:
            return
        while line := await stream.readline():
            text = line.decode(errors="replace")
            run.buffer.append(text)
            run.tail = [*run.tail, text][-20:]

    async def _send_logs(self, run: _Run) -> None:
        if not run.buffer or run.lost_server:
            return
        text, run.buffer = "".join(run.buffer), []
        try:
            ack = await self.client.logs(run.job.job_id, run.job.lease_token, text)
        except (httpx.HTTPError, ServerRefusedError) as exc:
            run.buffer.insert(0, text)
            log.debug("could not send logs yet: %s", exc)
            return
        if not ack.keep_running:
            await self._stop(run, "the server asked to stop")

    async def _flush_logs(self, run: _Run) -> None:
        while True:
            await asyncio.sleep(self.options.log_flush_seconds)
            await self._send_logs(run)

    async def _heartbeat(self, run: _Run) -> None:
        last_ok = time.monotonic()
        while True:
            try:
                beat = await self.client.heartbeat(run.job.job_id, run.job.lease_token, running=True)
                last_ok = time.monotonic()
                self.drain = self.drain or beat.drain
                if not beat.keep_running:
                    await self._stop(run, beat.reason or "the server asked to stop")
                    return
            except (httpx.HTTPError, ServerRefusedError) as exc:
                if time.monotonic() - last_ok > self.options.server_grace_seconds:
                    run.lost_server = True
                    await self._stop(run, f"lost the server: {exc}")
                    return
            await asyncio.sleep(run.job.heartbeat_seconds)

    async def _watch_shutdown(self, run: _Run) -> None:
        await self.shutdown.wait()
        await self._stop(run, "the worker was stopped")

    async def _stop(self, run: _Run, reason: str) -> None:
        """SIGTERM the trainer's process group; SIGKILL it after the grace period."""
        if run.stop_reason is not None:
            return
        run.stop_reason = reason
        log.warning("job %s: stopping the trainer: %s", run.job.job_id, reason)
        _signal_group(run.process, signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(run.process.wait()), timeout=self.options.kill_grace_seconds)
        except TimeoutError:
            _signal_group(run.process, signal.SIGKILL)

    async def _finish(self, run: _Run, code: int, output: Path) -> None:
        job = run.job
        if run.lost_server:
            log.warning("job %s: given up (the server was lost)", job.job_id)
            return
        if run.stop_reason is not None:
            status = "failed" if self.shutdown.is_set() else "cancelled"
            await self._report(job, status, error=run.stop_reason, exit_code=code)
            return
        if code != 0:
            tail = "".join(run.tail).strip()[-2000:]
            await self._report(job, "failed", error=f"The trainer exited with code {code}.\n{tail}", exit_code=code)
            return
        if job.storage is not None:
            try:
                with httpx.Client(timeout=300.0, trust_env=True) as http:
                    keys = await asyncio.to_thread(upload_tree, http, job.storage, output)
                log.info("job %s: uploaded %d output files", job.job_id, len(keys))
            except httpx.HTTPError as exc:
                await self._report(job, "failed", error=f"Uploading the outputs failed: {exc}", exit_code=code)
                return
        await self._report(job, "completed", exit_code=code)

    async def _report(
        self, job: ClaimedJob, status: str, *, error: str | None = None, exit_code: int | None = None
    ) -> None:
        deadline = time.monotonic() + self.options.server_grace_seconds
        while True:
            try:
                ack = await self.client.result(job.job_id, job.lease_token, status, error=error, exit_code=exit_code)
                if not ack.accepted:
                    log.warning("job %s: the server ignored the result (the lease was lost)", job.job_id)
                else:
                    log.info("job %s: reported %s", job.job_id, status)
                return
            except ServerRefusedError as exc:
                log.warning("job %s: result refused: %s", job.job_id, exc)
                return
            except httpx.HTTPError as exc:
                if time.monotonic() > deadline:
                    log.warning("job %s: could not report the result: %s", job.job_id, exc)
                    return
                await asyncio.sleep(0.5)


def _signal_group(process: asyncio.subprocess.Process, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


async def run_agent(options: AgentOptions) -> int:
    """Run a worker until it is done; SIGTERM and SIGINT stop it cleanly. Returns the exit code."""
    agent = Agent(options)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, agent.shutdown.set)
    return await agent.run()


def main_entry(options: AgentOptions) -> int:
    """Run a worker in a fresh event loop (what ``cloudtuner worker`` calls)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return asyncio.run(run_agent(options))
