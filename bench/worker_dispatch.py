"""Worker dispatch: submit → a waiting worker's claim latency, and jobs/s through simulated workers.

Targets (issue 7):

1. from submit to a waiting worker's claim: p50 under 100 ms;
2. 1,000 short jobs through 20 simulated workers: at least 100 jobs per second claimed and
   completed on SQLite, with no job run twice.

The server is ``cloudtuner server`` itself, in its own process, on a fresh SQLite data dir and
a free 127.0.0.1 port, with its default settings. The simulated workers live in this process
and speak the worker protocol over HTTP, as ``cloudtuner worker`` processes do: each claims a
job (long poll), then reports ``completed`` at once. Prints the figures, the server's CPU time
per job, and PASS/FAIL lines.

    .venv/bin/python bench/worker_dispatch.py                  # about 30 s
    .venv/bin/python bench/worker_dispatch.py --jobs 2000 --workers 40
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections import Counter
from typing import Any

import httpx

from _harness import (
    BenchError,
    Child,
    cloudtuner_server_argv,
    cpu_seconds,
    free_port,
    load_average,
    scratch_dir,
    server_env,
    stop_on_sigterm,
    verdict,
    wait_ready,
)

JOB: dict[str, Any] = {
    "config": {"--model_family": "flux", "--model_type": "lora", "--max_train_steps": 1},
    "dataloader_config": [{"id": "remote", "type": "huggingface", "dataset_type": "image", "dataset_name": "x/y"}],
}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def submit(client: httpx.AsyncClient) -> str:
    reply = await client.post("/api/cloud/jobs/submit?provider=worker", json=JOB)
    if reply.status_code != 202:
        raise BenchError(f"submit failed: {reply.status_code} {reply.text}")
    job_id: str = reply.json()["job_id"]
    return job_id


async def new_worker(client: httpx.AsyncClient, name: str) -> str:
    reply = await client.post("/api/admin/workers", json={"name": name})
    if reply.status_code != 201 and reply.status_code != 200:
        raise BenchError(f"creating worker {name} failed: {reply.status_code} {reply.text}")
    token: str = reply.json()["token"]
    registered = await client.post("/api/worker/register", json={}, headers=bearer(token))
    if registered.status_code != 200:
        raise BenchError(f"registering worker {name} failed: {registered.status_code} {registered.text}")
    return token


async def claim(client: httpx.AsyncClient, token: str, wait: float) -> dict[str, Any] | None:
    reply = await client.post("/api/worker/claim", json={"wait_seconds": wait}, headers=bearer(token))
    if reply.status_code != 200:
        raise BenchError(f"claim failed: {reply.status_code} {reply.text}")
    job: dict[str, Any] | None = reply.json()["job"]
    return job


async def complete(client: httpx.AsyncClient, token: str, job: dict[str, Any]) -> None:
    reply = await client.post(
        f"/api/worker/jobs/{job['job_id']}/result",
        json={"lease_token": job["lease_token"], "status": "completed"},
        headers=bearer(token),
    )
    if reply.status_code != 200 or not reply.json()["accepted"]:
        raise BenchError(f"result of {job['job_id']} refused: {reply.status_code} {reply.text}")


async def latency(client: httpx.AsyncClient, rounds: int) -> list[float]:
    """Milliseconds from sending a submit to a waiting worker's claim returning that job."""
    token = await new_worker(client, "latency")
    samples: list[float] = []
    for _ in range(rounds):
        waiting = asyncio.create_task(claim(client, token, 10.0))
        await asyncio.sleep(0.05)  # let the claim reach its long poll
        started = time.perf_counter()
        job_id = await submit(client)
        job = await waiting
        samples.append((time.perf_counter() - started) * 1000)
        if job is None or job["job_id"] != job_id:
            raise BenchError(f"the waiting worker did not get job {job_id}: {job}")
        await complete(client, token, job)
    return samples


async def throughput(client: httpx.AsyncClient, jobs: int, workers: int) -> tuple[float, Counter[str]]:
    """Submit ``jobs``, then time ``workers`` simulated workers claiming and completing them all."""
    tokens = [await new_worker(client, f"sim-{n}") for n in range(workers)]
    await asyncio.gather(*(submit(client) for _ in range(jobs)))
    claimed: Counter[str] = Counter()
    done = 0
    started = time.perf_counter()

    async def work(token: str) -> None:
        nonlocal done
        while done < jobs:
            job = await claim(client, token, 0.5)
            if job is None:
                continue
            claimed[job["job_id"]] += 1
            await complete(client, token, job)
            done += 1

    await asyncio.gather(*(work(token) for token in tokens))
    return jobs / (time.perf_counter() - started), claimed


async def measure(args: argparse.Namespace, port: int, server_pid: int) -> bool:
    limits = httpx.Limits(max_connections=args.workers + 8, max_keepalive_connections=args.workers + 8)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60, limits=limits) as client:
        samples = await latency(client, args.rounds)
        p50 = statistics.median(samples)
        p95 = sorted(samples)[max(0, int(len(samples) * 0.95) - 1)]
        print(f"submit -> claim: p50 {p50:.1f} ms, p95 {p95:.1f} ms over {len(samples)} jobs")
        cpu_before = cpu_seconds(server_pid)
        rate, claimed = await throughput(client, args.jobs, args.workers)
        cpu_per_job = (cpu_seconds(server_pid) - cpu_before) / args.jobs * 1000
    twice = [job for job, count in claimed.items() if count > 1]
    print(
        f"{args.jobs} jobs through {args.workers} workers: {rate:.0f} jobs/s claimed and completed; "
        f"run twice: {len(twice)}; server CPU {cpu_per_job:.1f} ms per job (submit included)"
    )
    ok_latency = p50 < 100
    ok_rate = rate >= 100 and not twice and len(claimed) == args.jobs
    print(f"{verdict(ok_latency)}: submit -> claim p50 {p50:.1f} ms; target < 100 ms")
    print(f"{verdict(ok_rate)}: {rate:.0f} jobs/s, none run twice; target >= 100 jobs/s")
    return ok_latency and ok_rate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=50, help="jobs for the latency figure (default 50)")
    parser.add_argument("--jobs", type=int, default=1000, help="jobs for the throughput figure (default 1000)")
    parser.add_argument("--workers", type=int, default=20, help="simulated workers (default 20)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (server log, data dir)")
    args = parser.parse_args()
    stop_on_sigterm()
    print(f"worker dispatch: cloudtuner server on SQLite, workers over HTTP; load average {load_average()}")
    with scratch_dir("bench-workers-", keep=args.keep) as work:
        port = free_port()
        argv = cloudtuner_server_argv(port, work / "data")
        with Child(argv, env=server_env(plugins=False), log_path=work / "server.log") as server:
            wait_ready(server, port)
            ok = asyncio.run(measure(args, port, server.pid))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
