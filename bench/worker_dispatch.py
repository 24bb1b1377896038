"""Worker dispatch: submit → a waiting worker's claim latency, and jobs/s through simulated workers.

Targets (issue 7):

1. from submit to a waiting worker's claim: p50 under 100 ms;
2. 1,000 short jobs through 20 simulated workers: at least 100 jobs per second claimed and
   completed on SQLite, with no job run twice.

The app runs in this process (its scheduler included) on a fresh SQLite file in a temporary
folder; simulated workers speak the worker protocol to it through httpx's ASGI transport (no
socket). A simulated worker claims, then reports ``completed`` at once.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cloudtuner.api.app import create_app
from cloudtuner.settings import Settings

JOB: dict[str, Any] = {
    "config": {"--model_family": "flux", "--model_type": "lora", "--max_train_steps": 1},
    "dataloader_config": [{"id": "remote", "type": "huggingface", "dataset_type": "image", "dataset_name": "x/y"}],
}


async def submit(client: httpx.AsyncClient) -> str:
    reply = await client.post("/api/cloud/jobs/submit?provider=worker", json=JOB)
    if reply.status_code != 202:
        raise SystemExit(f"submit failed: {reply.status_code} {reply.text}")
    job_id: str = reply.json()["job_id"]
    return job_id


async def new_worker(client: httpx.AsyncClient, name: str) -> str:
    reply = await client.post("/api/admin/workers", json={"name": name})
    token: str = reply.json()["token"]
    await client.post("/api/worker/register", json={}, headers={"Authorization": f"Bearer {token}"})
    return token


async def claim(client: httpx.AsyncClient, token: str, wait: float) -> dict[str, Any] | None:
    reply = await client.post(
        "/api/worker/claim", json={"wait_seconds": wait}, headers={"Authorization": f"Bearer {token}"}
    )
    job: dict[str, Any] | None = reply.json()["job"]
    return job


async def complete(client: httpx.AsyncClient, token: str, job: dict[str, Any]) -> None:
    await client.post(
        f"/api/worker/jobs/{job['job_id']}/result",
        json={"lease_token": job["lease_token"], "status": "completed"},
        headers={"Authorization": f"Bearer {token}"},
    )


async def latency(client: httpx.AsyncClient, rounds: int) -> list[float]:
    token = await new_worker(client, "latency")
    samples: list[float] = []
    for _ in range(rounds):
        waiting = asyncio.create_task(claim(client, token, 10.0))
        await asyncio.sleep(0.05)  # let the claim reach its long-poll
        started = time.perf_counter()
        await submit(client)
        job = await waiting
        samples.append((time.perf_counter() - started) * 1000)
        if job is None:
            raise SystemExit("a claim came back empty")
        await complete(client, token, job)
    return samples


async def throughput(client: httpx.AsyncClient, jobs: int, workers: int) -> tuple[float, Counter[str]]:
    tokens = [await new_worker(client, f"sim-{n}") for n in range(workers)]
    for _ in range(jobs):
        await submit(client)
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


async def run(args: argparse.Namespace, folder: Path) -> bool:
    settings = Settings(
        data_dir=folder / "data",
        dispatch_interval_seconds=0.05,
        reconcile_interval_seconds=1.0,
        worker_lease_seconds=60.0,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1", timeout=60) as client:
            samples = await latency(client, args.rounds)
            p50 = statistics.median(samples)
            p95 = sorted(samples)[int(len(samples) * 0.95) - 1]
            print(f"submit -> claim: p50 {p50:.1f} ms, p95 {p95:.1f} ms over {len(samples)} jobs")
            rate, claimed = await throughput(client, args.jobs, args.workers)
            twice = [job for job, count in claimed.items() if count > 1]
            print(f"{args.jobs} jobs through {args.workers} workers: {rate:.0f} jobs/s; run twice: {len(twice)}")
    ok_latency = p50 < 100
    ok_rate = rate >= 100 and not twice and len(claimed) == args.jobs
    print(f"{'PASS' if ok_latency else 'FAIL'} submit -> claim p50 < 100 ms")
    print(f"{'PASS' if ok_rate else 'FAIL'} >= 100 jobs/s, none run twice")
    return ok_latency and ok_rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=50, help="Jobs for the latency figure.")
    parser.add_argument("--jobs", type=int, default=1000, help="Jobs for the throughput figure.")
    parser.add_argument("--workers", type=int, default=20, help="Simulated workers.")
    parser.add_argument("--keep", action="store_true", help="Keep the temporary folder.")
    args = parser.parse_args()
    print(f"load average: {os.getloadavg()}")
    folder = Path(tempfile.mkdtemp(prefix="cloudtuner-bench-workers-"))
    try:
        ok = asyncio.run(run(args, folder))
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
