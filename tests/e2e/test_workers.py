"""Self-hosted workers end to end: real server and `cloudtuner worker` processes, a fake trainer."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.harness import INLINE_JOB, REPO_ROOT, ServerFactory, ServerProcess, clean_env, cli_command, run_cli
from tests.support.waiting import wait_until_sync

TRAINER = f"{sys.executable} {REPO_ROOT / 'tests' / 'fakes' / 'trainer.py'}"
FAST_WORKERS = {"CLOUDTUNER_WORKER_LEASE_SECONDS": "1.5", "CLOUDTUNER_WORKER_POLL_SECONDS": "2"}


@dataclass
class WorkerProcess:
    """One `cloudtuner worker` process we started."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def wait_exit(self, timeout: float = 30.0) -> int:
        return self.process.wait(timeout=timeout)

    def kill9(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


@dataclass
class Workers:
    """Starts workers against a server and kills every one (and every trainer) at the end."""

    root: Path
    runs_path: Path
    started: list[WorkerProcess] = field(default_factory=list)

    def create_token(self, server: ServerProcess, name: str, labels: dict[str, str] | None = None) -> str:
        with server.http() as http:
            reply = http.post("/api/admin/workers", json={"name": name, "labels": labels or {}})
        assert reply.status_code == 201, reply.text
        token: str = reply.json()["token"]
        return token

    def start(
        self,
        server: ServerProcess,
        name: str,
        *,
        labels: dict[str, str] | None = None,
        persistent: bool = True,
        token: str | None = None,
    ) -> WorkerProcess:
        token = token or self.create_token(server, name, labels)
        argv = [
            *cli_command(), "worker", "--orchestrator-url", server.url, "--worker-token", token,
            "--trainer-command", TRAINER, "--work-dir", str(self.root / name), "--server-grace", "3",
        ]  # fmt: skip
        if persistent:
            argv.append("--persistent")
        log_path = self.root / f"{name}.log"
        env = clean_env(PYTHONPATH=str(REPO_ROOT), FAKE_TRAINER_RUNS=str(self.runs_path), FAKE_WORKER=name)
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                argv, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        worker = WorkerProcess(name, process, log_path)
        self.started.append(worker)
        return worker

    def runs(self) -> list[dict[str, Any]]:
        if not self.runs_path.exists():
            return []
        return [json.loads(line) for line in self.runs_path.read_text().splitlines() if line.strip()]

    def close(self) -> None:
        for worker in self.started:
            if worker.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(worker.process.pid, signal.SIGKILL)
                worker.process.wait(timeout=10)
        for run in self.runs():  # trainers of workers killed with -9 outlive them
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(int(run["pid"]), signal.SIGKILL)


@pytest.fixture
def workers(tmp_path: Path) -> Any:
    pool = Workers(tmp_path / "workers", tmp_path / "runs.jsonl")
    pool.root.mkdir()
    try:
        yield pool
    finally:
        pool.close()


def job_body(tmp_path: Path, **config: Any) -> dict[str, Any]:
    folder = tmp_path / "images"
    if not folder.exists():  # written once: a worker may be packing it for an earlier job
        folder.mkdir()
        (folder / "a.png").write_bytes(b"\x89PNG fake")
        (folder / "a.txt").write_text("a photo")
    dataset = {**INLINE_JOB["dataloader_config"][0], "instance_data_dir": str(folder)}
    return {
        **INLINE_JOB,
        "config": {**INLINE_JOB["config"], "--fake_step_seconds": 0.05, **config},
        "dataloader_config": [dataset],
    }


def worker_view(server: ServerProcess, name: str) -> dict[str, Any]:
    with server.http() as http:
        view: dict[str, Any] = http.get(f"/api/admin/workers/{name}").json()["worker"]
        return view


def test_two_workers_run_jobs_with_logs_progress_and_outputs(
    servers: ServerFactory, workers: Workers, tmp_path: Path
) -> None:
    server = servers.start(env=FAST_WORKERS)
    workers.start(server, "w1")
    workers.start(server, "w2")
    job_ids = [server.submit(job_body(tmp_path), provider="worker") for _ in range(4)]
    for job_id in job_ids:
        job = server.wait_for_status(job_id, "completed", timeout=60)
        assert job["progress"]["step"] == 4 and job["progress"]["total_steps"] == 4
        with server.http() as http:
            logs = http.get(f"/api/cloud/jobs/{job_id}/logs").json()["logs"]
        assert "Training is complete" in logs
        output = server.data_dir / "cloud_outputs"
        assert list(output.rglob("pytorch_lora_weights.safetensors")), "the output was not uploaded"
    assert Counter(run["job_id"] for run in workers.runs()) == dict.fromkeys(job_ids, 1)
    assert {w["status"] for w in [worker_view(server, "w1"), worker_view(server, "w2")]} <= {"idle", "busy"}


def test_crash_and_nonzero_exit_fail_the_job(servers: ServerFactory, workers: Workers, tmp_path: Path) -> None:
    server = servers.start(env=FAST_WORKERS)
    workers.start(server, "w1")
    crashed = server.submit(job_body(tmp_path, **{"--fake_mode": "crash"}), provider="worker")
    job = server.wait_for_status(crashed, "failed", timeout=60)
    assert "exited with code 1" in job["error"] and "crashed on purpose" in job["error"]
    exited = server.submit(job_body(tmp_path, **{"--fake_mode": "exit"}), provider="worker")
    assert "code 3" in server.wait_for_status(exited, "failed", timeout=60)["error"]


def test_kill_9_of_a_worker_requeues_the_job_to_another(
    servers: ServerFactory, workers: Workers, tmp_path: Path
) -> None:
    server = servers.start(env=FAST_WORKERS)
    first = workers.start(server, "w1")
    job_id = server.submit(job_body(tmp_path, **{"--fake_step_seconds": 0.3, "--max_train_steps": 10}), "worker")
    server.wait_for_status(job_id, "running", timeout=60)
    wait_until_sync(lambda: worker_view(server, "w1")["current_job_id"], lambda current: current == job_id)
    first.kill9()
    workers.start(server, "w2")
    job = server.wait_for_status(job_id, "completed", timeout=60)
    assert job["dispatch_attempts"] == 2
    assert [run["worker"] for run in workers.runs()] == ["w1", "w2"]


def test_cancel_stops_the_trainer(servers: ServerFactory, workers: Workers, tmp_path: Path) -> None:
    server = servers.start(env=FAST_WORKERS)
    worker = workers.start(server, "w1", persistent=False)
    job_id = server.submit(job_body(tmp_path, **{"--fake_mode": "hang"}), provider="worker")
    server.wait_for_status(job_id, "running", timeout=60)
    wait_until_sync(workers.runs, lambda runs: len(runs) == 1)
    with server.http() as http:
        assert http.post(f"/api/cloud/jobs/{job_id}/cancel").status_code == 200
    server.wait_for_status(job_id, "cancelled", timeout=30)
    assert worker.wait_exit(timeout=20) == 0  # ephemeral: one job, then it exits
    trainer_pid = int(workers.runs()[0]["pid"])
    wait_until_sync(lambda: _alive(trainer_pid), lambda alive: not alive, timeout=15)


def test_drain_finishes_the_current_job_then_exits(servers: ServerFactory, workers: Workers, tmp_path: Path) -> None:
    server = servers.start(env=FAST_WORKERS)
    worker = workers.start(server, "w1")
    job_id = server.submit(job_body(tmp_path, **{"--fake_step_seconds": 0.3, "--max_train_steps": 6}), "worker")
    server.wait_for_status(job_id, "running", timeout=60)
    with server.http() as http:
        assert http.post("/api/admin/workers/w1/drain").json()["worker"]["status"] == "draining"
    server.wait_for_status(job_id, "completed", timeout=60)
    assert worker.wait_exit(timeout=30) == 0
    later = server.submit(job_body(tmp_path), provider="worker")
    assert server.job(later)["status"] in ("queued", "starting")


def test_labels_route_jobs_to_matching_workers(servers: ServerFactory, workers: Workers, tmp_path: Path) -> None:
    server = servers.start(env=FAST_WORKERS)
    workers.start(server, "a100-box", labels={"gpu": "a100"})
    workers.start(server, "t4-box", labels={"gpu": "t4"})
    wanted = {
        server.submit(job_body(tmp_path, worker_labels={"gpu": "t4"}), provider="worker"): "t4-box",
        server.submit(job_body(tmp_path, worker_labels="gpu=a1*"), provider="worker"): "a100-box",
    }
    for job_id in wanted:
        server.wait_for_status(job_id, "completed", timeout=60)
    assert {run["job_id"]: run["worker"] for run in workers.runs()} == wanted


@pytest.mark.postgres
def test_two_servers_never_hand_one_job_to_two_workers(
    postgres_database_url: str, servers: ServerFactory, workers: Workers, tmp_path: Path
) -> None:
    shared = {**FAST_WORKERS, "CLOUDTUNER_SECRET_KEY": "one key for servers sharing a database"}
    first = servers.create("first", database_url=postgres_database_url, env=shared)
    second = servers.create("second", database_url=postgres_database_url, env=shared)
    first.launch()
    second.launch()
    first.wait_ready()
    second.wait_ready()
    for n in range(4):
        workers.start((first, second)[n % 2], f"w{n}")
    job_ids = [(first, second)[n % 2].submit(job_body(tmp_path), provider="worker") for n in range(12)]
    for job_id in job_ids:
        first.wait_for_status(job_id, "completed", timeout=90)
    assert Counter(run["job_id"] for run in workers.runs()) == dict.fromkeys(job_ids, 1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (not reaped by its dead parent yet) counts as gone.
    with contextlib.suppress(OSError):
        return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    return False


def test_the_local_provider_runs_jobs_through_its_own_workers(servers: ServerFactory, tmp_path: Path) -> None:
    runs = tmp_path / "local-runs.jsonl"
    env = {**FAST_WORKERS, "CLOUDTUNER_LOCAL_TRAINER_COMMAND": TRAINER, "CLOUDTUNER_LOCAL_MAX_JOBS": "2"}
    server = servers.create(env=env)
    server.extra_env["FAKE_TRAINER_RUNS"] = str(runs)
    server.start()
    job_ids = [server.submit(job_body(tmp_path), provider="local") for _ in range(3)]
    for job_id in job_ids:
        job = server.wait_for_status(job_id, "completed", timeout=90)
        assert job["progress"]["step"] == 4
    started = [json.loads(line) for line in runs.read_text().splitlines()]
    assert Counter(run["job_id"] for run in started) == dict.fromkeys(job_ids, 1)
    with server.http() as http:
        names = {w["name"] for w in http.get("/api/admin/workers").json()["workers"]}
    assert 1 <= len(names) <= 2 and all(name.startswith("local-") for name in names)
    server.stop()


def test_workers_cli(server: ServerProcess) -> None:
    created = run_cli("workers", "create", "box-1", "--label", "gpu=a100", "--json", url=server.url).json()
    assert created["command"] == f"cloudtuner worker --orchestrator-url {server.url} --worker-token {created['token']}"
    shown = run_cli("workers", "create", "box-2", url=server.url)
    assert "cloudtuner worker --orchestrator-url" in shown.stdout and "not shown again" in shown.stderr
    listed = run_cli("workers", "list", "--json", url=server.url).json()["workers"]
    assert [(w["name"], w["status"], w["labels"]) for w in listed] == [
        ("box-1", "connecting", {"gpu": "a100"}),
        ("box-2", "connecting", {}),
    ]
    table = run_cli("workers", "list", url=server.url).stdout
    assert "box-1" in table and "connecting" in table
    rotated = run_cli("workers", "rotate", "box-1", "--json", url=server.url).json()
    assert rotated["token"] != created["token"]
    run_cli("workers", "drain", "box-1", url=server.url)
    run_cli("workers", "delete", "box-2", url=server.url)
    assert [w["name"] for w in run_cli("workers", "list", "--json", url=server.url).json()["workers"]] == ["box-1"]
    missing = run_cli("workers", "delete", "nope", url=server.url, expect=None)
    assert missing.code != 0 and "No worker" in missing.stderr
    bad = run_cli("workers", "create", "box-3", "--label", "oops", url=server.url, expect=None)
    assert bad.code != 0 and "key=value" in bad.stderr


def test_a_dataset_that_changes_while_it_is_sent_cuts_the_download_short(
    servers: ServerFactory, tmp_path: Path
) -> None:
    folder = tmp_path / "changing"
    folder.mkdir()
    (folder / "a_large.png").write_bytes(os.urandom(8 << 20))  # sent first (walk order)
    growing = folder / "z_growing.png"
    growing.write_bytes(b"\x89PNG start")
    dataset = {**INLINE_JOB["dataloader_config"][0], "instance_data_dir": str(folder)}
    server = servers.start(env=FAST_WORKERS)
    with server.http() as http:
        created = http.post("/api/admin/workers", json={"name": "manual", "labels": {}})
        headers = {"Authorization": f"Bearer {created.json()['token']}"}
        assert http.post("/api/worker/register", json={}, headers=headers).status_code == 200
        job_id = server.submit({**INLINE_JOB, "dataloader_config": [dataset]}, provider="worker")
        claimed = http.post("/api/worker/claim", json={"wait_seconds": 10}, headers=headers).json()["job"]
        assert claimed["job_id"] == job_id
        stop = threading.Event()

        def grow() -> None:  # the file keeps changing, so packing finds it unlike the scan
            while not stop.is_set():
                with growing.open("ab") as handle:
                    handle.write(b"x")

        grower = threading.Thread(target=grow, daemon=True)
        grower.start()
        received = bytearray()

        def download() -> None:
            url = f"/api/worker/jobs/{job_id}/datasets"
            with http.stream("GET", url, params={"lease_token": claimed["lease_token"]}, headers=headers) as reply:
                assert reply.status_code == 200
                for chunk in reply.iter_bytes():
                    received.extend(chunk)

        try:
            with pytest.raises(httpx.RemoteProtocolError):
                download()
        finally:
            stop.set()
            grower.join()
    assert len(received) > 4 << 20, "the files before the change went out"
    log = wait_until_sync(server.log_text, lambda text: "stopped part way" in text, timeout=10)
    assert "changed after the upload summary" in log
    assert "unexpected error" not in log and "Traceback" not in log
