"""Benchmark: the server CPU a submission costs, split into the request and the job's dispatch.

A diagnostic for issue 2's submit throughput target (``submit_throughput.py`` judges the target).
It runs the cloudtuner app in this process on a fresh SQLite data dir, with the scripted provider
from ``tests/fakes`` and no background scheduler, under uvloop when installed:

1. **request**: ``--jobs`` submissions (the benchmark's inline config) sent straight to the ASGI
   app by ``--concurrency`` callers (no sockets, no HTTP parsing: what uvicorn adds is left out),
   after an untimed warm-up; every reply must be 202;
2. **dispatch**: a scheduler then starts every queued job (claim, intent, the scripted provider's
   run, the attached run), round after round until none is left.

Prints the CPU milliseconds a submission and a dispatched job cost (process CPU time over the
count, steadier than wall time on a shared machine), and with ``--profile`` the top functions of
each part by cumulative time (cProfile, which slows everything down: read its shares, not its
times).

    .venv/bin/python bench/submit_cpu.py
    .venv/bin/python bench/submit_cpu.py --jobs 2000 --profile
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import pstats
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from _harness import REPO, SUBMIT_BODY, load_average, scratch_dir

sys.path.insert(0, str(REPO))  # tests.fakes

from tests.fakes.scripted_provider import ScriptedProvider

from cloudtuner.api.app import create_app
from cloudtuner.scheduler.loops import Scheduler
from cloudtuner.settings import Settings

SUBMIT_PATH = "/api/cloud/jobs/submit"
WARMUP_SUBMITS = 640


class Measured:
    """CPU time of a block, and its cProfile when asked."""

    def __init__(self, profile: bool) -> None:
        self.profiler = cProfile.Profile() if profile else None
        self.cpu_seconds = 0.0

    async def run(self, work: Callable[[], Awaitable[None]]) -> None:
        start = time.process_time()
        if self.profiler:
            self.profiler.enable()
        try:
            await work()
        finally:
            if self.profiler:
                self.profiler.disable()
            self.cpu_seconds = time.process_time() - start

    def top(self, count: int = 25) -> str:
        if self.profiler is None:
            return ""
        out = io.StringIO()
        pstats.Stats(self.profiler, stream=out).sort_stats("cumulative").print_stats(count)
        return out.getvalue()


def submit_scope(body: bytes) -> dict[str, Any]:
    """Return the ASGI scope of a submission, as uvicorn would build it."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": SUBMIT_PATH,
        "raw_path": SUBMIT_PATH.encode(),
        "query_string": b"provider=scripted",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1:8001"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8001),
        "state": {},
    }


async def submit_once(app: Any, body: bytes) -> int:
    """Send one submission to the ASGI app; return its status."""
    delivered = False
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # the client never goes away
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    await app(submit_scope(body), receive, send)
    return statuses[0] if statuses else 0


async def submit_many(app: Any, body: bytes, count: int, concurrency: int) -> None:
    """Send ``count`` submissions from ``concurrency`` callers; fail on any reply but 202."""

    async def caller(share: int) -> None:
        for _ in range(share):
            status = await submit_once(app, body)
            if status != 202:
                raise SystemExit(f"a submission was answered {status}, not 202")

    shares = [count // concurrency + (i < count % concurrency) for i in range(concurrency)]
    await asyncio.gather(*(caller(share) for share in shares))


async def dispatch_all(scheduler: Scheduler) -> None:
    """Start every queued job, round after round, until a round finds none."""
    while True:
        if await scheduler.run_dispatch_once() == 0:
            await scheduler.drain()
            if await scheduler.run_dispatch_once() == 0:
                break
    await scheduler.drain()


async def run(args: argparse.Namespace, data_dir: Path) -> None:
    settings = Settings(data_dir=data_dir, scheduler_enabled=False)
    app = create_app(settings, providers=[ScriptedProvider()])
    body = json.dumps(SUBMIT_BODY).encode()
    async with app.router.lifespan_context(app):
        await submit_many(app, body, WARMUP_SUBMITS, args.concurrency)
        await dispatch_all(Scheduler(app.state.ctx))  # the warm-up's jobs, untimed
        request = Measured(args.profile)
        await request.run(lambda: submit_many(app, body, args.jobs, args.concurrency))
        dispatch = Measured(args.profile)
        await dispatch.run(lambda: dispatch_all(Scheduler(app.state.ctx)))
    print(f"  request   {1000 * request.cpu_seconds / args.jobs:6.3f} ms of CPU a submission (no HTTP)")
    print(f"  dispatch  {1000 * dispatch.cpu_seconds / args.jobs:6.3f} ms of CPU a job started")
    if args.profile:
        print("\nrequest, top functions by cumulative time:\n" + request.top())
        print("dispatch, top functions by cumulative time:\n" + dispatch.top())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=4000, help="submissions measured (default 4000)")
    parser.add_argument("--concurrency", type=int, default=32, help="callers side by side (default 32)")
    parser.add_argument("--profile", action="store_true", help="also print cProfile's top functions")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
        loop = "uvloop"
    except ImportError:
        loop = "asyncio"
    print(
        f"submit CPU: {args.jobs} submissions by {args.concurrency} callers in process ({loop}), "
        f"then their dispatch; load average {load_average()}"
    )
    with scratch_dir("bench-submit-cpu-") as work:
        asyncio.run(run(args, work / "data"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
