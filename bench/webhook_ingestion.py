"""Benchmark: ingestion of signed Replicate webhooks.

Target (issue 3): webhook ingestion handles **at least 1,000 signed events per second** on this
machine, with **p99 under 50 ms**.

Setup, all on free 127.0.0.1 ports, each process in its own process group:

1. the fake Replicate from ``tests/fakes/replicate`` (``python -m tests.fakes.replicate``), with a
   webhook signing secret the script makes up and a default script that keeps every run
   ``processing`` (outcome ``hang``) after its first log lines;
2. ``cloudtuner server`` on a fresh data dir, pointed at the fake (``CLOUDTUNER_REPLICATE_API_URL``,
   ``REPLICATE_API_TOKEN``), with ``CLOUDTUNER_PUBLIC_URL`` set to its own address so that runs are
   created with a webhook URL. It gets the signing secret the way it always does, from the fake's
   ``GET /v1/webhooks/default/secret``. Polling is set to every 600 s, so during the measurement
   the webhooks are the only source of news about the runs;
3. ``--jobs`` jobs submitted over the API (inline config, one small local dataset, upload
   consent), which the real scheduler packages, uploads and starts at the fake. The script waits
   until every job is ``running`` (moved there by the fake's own ``start`` webhook) and the fake's
   deliveries have stopped, then reads each run's prediction object from the fake's API.

The deliveries are then built from those prediction objects as Replicate sends them: the whole
prediction as the body (status ``processing`` with a log that grows by ``--lines-per-event``
SimpleTuner progress lines per delivery; at the end ``succeeded`` with metrics and output for a
quarter of the jobs and ``failed`` with an error for a twentieth), signed with Standard Webhooks
headers (``webhook-id``, ``webhook-timestamp``, ``webhook-signature: v1,<base64 HMAC-SHA256>``),
and posted to ``/api/webhooks/replicate?job_id=<id>``, the URL the server gave the run. A share of
deliveries (``--duplicates``) is sent a second time with the same ``webhook-id`` and a new
timestamp and signature, as a retry is; those must be answered ``duplicate: true``. Each job's
deliveries go out in order. They are signed just before each phase, so none is stale
(``_webhook_deliveries.py`` builds and signs them).

The load comes from this script run as a separate process (``--loadgen``, which runs
``_webhook_loadgen.py``), on uvloop when it is installed, over keep-alive connections with
hand-written HTTP/1.1 requests:

* **capacity** (closed loop): ``--concurrency`` connections, each sending its jobs' deliveries
  one after another as fast as the replies come, enough to keep the one-process server busy.
  Events/s are counted after ``--warmup`` seconds and until the first connection runs out of
  deliveries (latencies are printed, not judged);
* **target rate** (open loop): deliveries are due at ``--rate`` per second for ``--rate-seconds``,
  whatever the server's replies, over a pool of ``--rate-connections`` connections. A delivery's
  latency runs from the time it was due, so waiting for a free connection counts too.

Every reply is checked: HTTP 200, ``duplicate`` as expected, the right job and the status the
delivery implies. Afterwards every job is read back: its status (running, completed or failed),
its progress step and its whole log must match the last delivery sent for it.

Prints events/s, p50/p99 latency, the server's and the load generator's CPU use, the machine's
load average, and two PASS/FAIL lines: the capacity phase's events/s against 1,000, and the p99
of the target-rate phase against 50 ms (with every delivery answered and the offered rate kept).

    .venv/bin/python bench/webhook_ingestion.py                    # ~1-2 minutes
    .venv/bin/python bench/webhook_ingestion.py --jobs 100 --events-per-job 40 --rate-seconds 5
    .venv/bin/python bench/webhook_ingestion.py --profile          # server under cProfile (slower)
"""

from __future__ import annotations

import argparse
import base64
import importlib.util
import json
import math
import os
import pstats
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _harness import (
    HOST,
    PYTHON,
    BenchError,
    Child,
    KeepAliveClient,
    cloudtuner_server_argv,
    count_jobs,
    cpu_seconds,
    free_port,
    load_average,
    scratch_dir,
    server_env,
    stop_on_sigterm,
    summarize,
    verdict,
    wait_ready,
)
from _webhook_deliveries import ERROR_TEXT, HOOK_PATH, LEARNING_RATE, STEP_STRIDE, Delivery, DeliveryBuilder, Job
from _webhook_loadgen import run_loadgen, write_plan

TARGET_EVENTS_PER_SECOND = 1000.0
TARGET_P99_MS = 50.0
TOKEN = "r8_benchWebhookIngestion0000000000000000"


# --- processes ----------------------------------------------------------------------------------


def start_fake(work: Path, secret: str) -> tuple[Child, int]:
    """Start the fake Replicate with ``secret`` as its webhook signing secret; return it and its port."""
    port = free_port()
    config = {
        "tokens": [TOKEN],
        "webhook_secret": secret,
        "starting_seconds": 0.2,
        "processing_seconds": 1.0,
        "tick_seconds": 0.02,
        "webhook_retry_delays": [0.2, 0.5, 1.0],
    }
    argv = [PYTHON, "-m", "tests.fakes.replicate", "--port", str(port), "--config", json.dumps(config)]
    fake = Child(argv, env=server_env(plugins=False), log_path=work / "fake-replicate.log").start()
    try:
        wait_ready(fake, port, path="/_fake/health")
        with KeepAliveClient(port) as client:
            # Every run stays "processing" once its scripted log has shown the trainer's start-up
            # lines (before any progress line): the bench's deliveries carry it on from there.
            status, reply = client.request(
                "PUT", "/_fake/scripts/default", json.dumps({"outcome": "hang", "stop_at": 0.14}).encode()
            )
            if status != 200:
                raise BenchError(f"the fake refused the default script: {status} {reply[:300]!r}")
    except BaseException:
        fake.stop()
        raise
    return fake, port


def server_argv(port: int, data_dir: Path, profile_out: Path | None) -> list[str]:
    argv = cloudtuner_server_argv(port, data_dir)
    if profile_out is None:
        return argv
    return [PYTHON, "-m", "cProfile", "-o", str(profile_out), *argv]


# --- jobs ---------------------------------------------------------------------------------------


def make_dataset(work: Path) -> Path:
    """A small local image dataset (random bytes as .jpg files, text captions)."""
    folder = work / "datasets" / "portraits"
    folder.mkdir(parents=True)
    rng = random.Random(7)
    for index in range(4):
        (folder / f"img_{index:02d}.jpg").write_bytes(rng.randbytes(8192))
        (folder / f"img_{index:02d}.txt").write_text(f"a photo of sks person, pose {index}")
    return folder


def submit_body(dataset: Path, index: int, total_steps: int) -> dict[str, Any]:
    return {
        "config": {
            "--model_family": "flux",
            "--model_type": "lora",
            "--pretrained_model_name_or_path": "black-forest-labs/FLUX.1-dev",
            "--output_dir": f"/outputs/flux-lora-{index}",
            "--max_train_steps": total_steps,
            "--learning_rate": float(LEARNING_RATE),
            "--lora_rank": 16,
            "--train_batch_size": 1,
            "--validation_prompt": f"a photo of sks person number {index}",
        },
        "dataloader_config": [
            {
                "id": "training-images",
                "type": "local",
                "dataset_type": "image",
                "instance_data_dir": str(dataset),
                "caption_strategy": "textfile",
                "resolution": 1024,
            }
        ],
        "upload_consent": True,
    }


def wait_until(what: str, probe: Any, deadline_seconds: float, interval: float = 0.2) -> Any:
    """Call ``probe`` until it returns something true; raise BenchError after the deadline."""
    deadline = time.monotonic() + deadline_seconds
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {deadline_seconds:.0f} s waiting for {what}")
        time.sleep(interval)


def create_jobs(port: int, fake_port: int, work: Path, args: argparse.Namespace, total_steps: int) -> list[Job]:
    """Submit the jobs, wait until they run at the fake and it has gone quiet; return them."""
    dataset = make_dataset(work)
    jobs: list[Job] = []
    with KeepAliveClient(port) as client:
        for index in range(args.jobs):
            body = json.dumps(submit_body(dataset, index, total_steps)).encode()
            status, reply = client.request("POST", "/api/cloud/jobs/submit?provider=replicate", body)
            if status != 202:
                raise BenchError(f"submit: HTTP {status}: {reply[:300]!r}")
            jobs.append(Job(index=index, job_id=json.loads(reply)["job_id"]))

    def all_running() -> bool:
        counts = count_jobs(port)
        stuck = {s: n for s, n in counts.items() if s in ("failed", "cancelled", "completed")}
        if stuck:
            raise BenchError(f"jobs ended before the bench started: {counts}")
        return counts == {"running": args.jobs}

    wait_until(f"{args.jobs} jobs to be running", all_running, args.setup_timeout)

    with KeepAliveClient(port) as client, KeepAliveClient(fake_port) as fake:
        for job in jobs:
            job.run_id = client.get_json(f"/api/cloud/jobs/{job.job_id}")["job"]["provider_job_id"]
        # Quiet: the fake's deliveries have stopped (unchanged for longer than its 0.5 s logs
        # throttle) and every job holds its run's whole log.
        seen: dict[str, Any] = {"count": -1, "since": time.monotonic()}

        def quiet() -> bool:
            deliveries = fake.get_json("/_fake/webhooks")
            if len(deliveries) != seen["count"]:
                seen.update(count=len(deliveries), since=time.monotonic())
                return False
            if time.monotonic() - seen["since"] < 1.5:
                return False
            for job in jobs:
                run = fake.get_json(f"/_fake/runs/{job.run_id}")
                if run["api"]["status"] != "processing":
                    raise BenchError(f"run {job.run_id} is {run['api']['status']}, not processing")
                if client.get_json(f"/api/cloud/jobs/{job.job_id}/logs")["logs"] != run["logs"]:
                    return False
                job.prediction = run["api"]
                job.logs = run["logs"]
            return True

        wait_until("the fake's own webhooks to be delivered", quiet, args.setup_timeout, interval=0.3)
    return jobs


# --- phases -------------------------------------------------------------------------------------


@dataclass
class PhaseResult:
    name: str
    events: int
    window_events: int
    events_per_second: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    server_cpu_ms_per_event: float
    server_cpu_percent: float
    loadgen_cpu_percent: float
    fake_cpu_percent: float
    seconds: float
    extra: str = ""


@dataclass
class Servers:
    """The processes under load: cloudtuner on ``port``, and the fake Replicate beside it."""

    server: Child
    fake: Child
    port: int


def run_phase(
    name: str, plan: dict[str, Any], deliveries: list[Delivery], servers: Servers, work: Path, deadline: float
) -> dict[str, Any]:
    """Run the load generator on ``deliveries``; return its result after checking every reply."""
    plan_path = work / f"{name}.json"
    out = work / f"{name}-result.json"
    plan.update(out=str(out), deadline=deadline)
    write_plan(plan_path, plan, deliveries)
    server, fake = servers.server, servers.fake
    cpu_before, fake_before = cpu_seconds(server.pid), cpu_seconds(fake.pid)
    began = time.perf_counter()
    argv = [PYTHON, str(Path(__file__).resolve()), "--loadgen", str(plan_path)]
    with Child(argv, env=server_env(plugins=False), log_path=work / f"{name}-loadgen.log") as loadgen:
        wait_until(f"the {name} load generator", lambda: loadgen.exited() is not None, deadline + 30, interval=0.05)
        if loadgen.exited() != 0:
            raise BenchError(f"the {name} load generator failed:\n{loadgen.output()}")
    result: dict[str, Any] = json.loads(out.read_text())
    result["server_cpu"] = cpu_seconds(server.pid) - cpu_before
    result["fake_cpu"] = cpu_seconds(fake.pid) - fake_before
    result["wall"] = time.perf_counter() - began
    if server.exited() is not None:
        raise BenchError(f"the server exited during the {name} phase:\n{server.output()}")
    if result["bad_count"]:
        raise BenchError(
            f"{result['bad_count']} of {len(deliveries)} replies were wrong in the {name} phase "
            f"(statuses {result['statuses']}):\n  " + "\n  ".join(result["bad"])
        )
    return result


def capacity_phase(
    jobs: list[Job], builder: DeliveryBuilder, servers: Servers, work: Path, args: argparse.Namespace
) -> PhaseResult:
    """Closed loop: as many deliveries per second as the server answers."""
    builder.timestamp = int(time.time())
    deliveries: list[Delivery] = []
    connections: list[list[int]] = [[] for _ in range(args.concurrency)]
    # Each connection carries whole jobs; their deliveries interleave round-robin, in order per job.
    for _ in range(args.events_per_job):
        for job in jobs:
            for delivery in builder.next(job, last=False):
                connections[job.index % args.concurrency].append(len(deliveries))
                deliveries.append(delivery)
    plan = {"mode": "closed", "port": servers.port, "connections": connections, "job_ids": [j.job_id for j in jobs]}
    result = run_phase("capacity", plan, deliveries, servers, work, args.phase_timeout)
    window_start = result["started"] + args.warmup
    window_end = min(result["finished"])
    if window_end - window_start < 1.0:
        raise BenchError(
            f"the measured window is {window_end - window_start:.2f} s: raise --events-per-job or lower --warmup"
        )
    latencies = [
        (done - began) * 1000
        for conn in result["times"]
        for began, done in conn
        if began >= window_start and done <= window_end
    ]
    summary = summarize(latencies)
    seconds = window_end - window_start
    return PhaseResult(
        name="capacity",
        events=len(deliveries),
        window_events=summary.count,
        events_per_second=summary.count / seconds,
        p50_ms=summary.p50,
        p99_ms=summary.p99,
        max_ms=summary.max,
        server_cpu_ms_per_event=1000 * result["server_cpu"] / len(deliveries),
        server_cpu_percent=100 * result["server_cpu"] / result["wall"],
        loadgen_cpu_percent=100 * result["cpu_seconds"] / result["wall"],
        fake_cpu_percent=100 * result["fake_cpu"] / result["wall"],
        seconds=seconds,
        extra=f"{args.concurrency} connections, {result['duplicates']} retries answered duplicate",
    )


def rate_phase(
    jobs: list[Job], builder: DeliveryBuilder, servers: Servers, work: Path, args: argparse.Namespace
) -> PhaseResult:
    """Open loop: deliveries due at ``--rate`` per second; jobs finish with their last one."""
    builder.timestamp = int(time.time())
    total = int(args.rate * args.rate_seconds)
    per_job = max(1, total // len(jobs))
    deliveries: list[Delivery] = []
    for number in range(per_job):
        for job in jobs:
            deliveries.extend(builder.next(job, last=number == per_job - 1))
    plan = {"mode": "open", "port": servers.port, "rate": args.rate, "pool": args.rate_connections}
    plan["job_ids"] = [j.job_id for j in jobs]
    result = run_phase("rate", plan, deliveries, servers, work, args.rate_seconds * 3 + args.phase_timeout)
    times = result["times"]
    latencies = [(done - due) * 1000 for due, _, done in times]
    summary = summarize(latencies)
    seconds = max(done for _, _, done in times) - result["started"]
    late_sends = sum(1 for due, sent, _ in times if sent - due > 0.005)
    return PhaseResult(
        name="rate",
        events=len(deliveries),
        window_events=summary.count,
        events_per_second=len(deliveries) / seconds,
        p50_ms=summary.p50,
        p99_ms=summary.p99,
        max_ms=summary.max,
        server_cpu_ms_per_event=1000 * result["server_cpu"] / len(deliveries),
        server_cpu_percent=100 * result["server_cpu"] / result["wall"],
        loadgen_cpu_percent=100 * result["cpu_seconds"] / result["wall"],
        fake_cpu_percent=100 * result["fake_cpu"] / result["wall"],
        seconds=seconds,
        extra=(
            f"offered {args.rate:g}/s over {args.rate_connections} connections; "
            f"{late_sends} sent > 5 ms after due; {result['duplicates']} retries answered duplicate"
        ),
    )


def show(result: PhaseResult) -> None:
    print(
        f"  {result.name:<9} {result.events_per_second:8.0f} events/s   p50 {result.p50_ms:6.2f} ms   "
        f"p99 {result.p99_ms:6.2f} ms   max {result.max_ms:7.2f} ms   ({result.window_events} events in "
        f"{result.seconds:.1f} s)"
    )
    print(
        f"            server CPU {result.server_cpu_percent:4.0f} % ({result.server_cpu_ms_per_event:.2f} ms per "
        f"event, {1000 / result.server_cpu_ms_per_event:.0f} events per CPU-second)   load generator CPU "
        f"{result.loadgen_cpu_percent:4.0f} %   fake Replicate CPU {result.fake_cpu_percent:3.0f} %"
    )
    print(f"            {result.extra}")


def check_jobs(port: int, jobs: list[Job]) -> dict[str, int]:
    """Every job must show the status, progress and log of the last delivery sent for it."""
    counts: dict[str, int] = {}
    with KeepAliveClient(port) as client:
        for job in jobs:
            detail = client.get_json(f"/api/cloud/jobs/{job.job_id}")["job"]
            status = detail["status"]
            counts[status] = counts.get(status, 0) + 1
            problems = []
            if status != job.final_status:
                problems.append(f"status {status}, expected {job.final_status}")
            progress = detail.get("progress") or {}
            if progress.get("step") != job.step:
                problems.append(f"progress step {progress.get('step')}, expected {job.step}")
            if status == "completed" and not detail.get("cost_usd"):
                problems.append("no cost on a completed job")
            if status == "failed" and ERROR_TEXT not in (detail.get("error") or ""):
                problems.append(f"error {detail.get('error')!r}")
            logs = client.get_json(f"/api/cloud/jobs/{job.job_id}/logs")["logs"]
            if logs != job.final_logs:
                problems.append(f"log of {len(logs)} characters, expected {len(job.final_logs)}")
            if problems:
                raise BenchError(f"job {job.job_id} ({job.run_id}): " + "; ".join(problems))
    return counts


def print_profile(path: Path, limit: int) -> None:
    if not path.exists():
        print(f"(no profile written to {path})")
        return
    stats = pstats.Stats(str(path))
    print("server profile (cProfile of the server process; SQLite runs on its event loop thread):")
    stats.sort_stats("cumulative").print_stats(limit)
    stats.sort_stats("tottime").print_stats(limit)


# --- main ---------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=200, help="running jobs the deliveries are for (default 200)")
    parser.add_argument(
        "--events-per-job", type=int, default=60, help="deliveries per job in the capacity phase (default 60)"
    )
    parser.add_argument("--concurrency", type=int, default=32, help="connections in the capacity phase (default 32)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds not counted in the capacity phase")
    parser.add_argument("--rate", type=float, default=1000.0, help="deliveries per second offered (default 1000)")
    parser.add_argument("--rate-seconds", type=float, default=10.0, help="length of the target-rate phase")
    parser.add_argument("--rate-connections", type=int, default=64, help="connection pool of the target-rate phase")
    parser.add_argument("--lines-per-event", type=int, default=2, help="log lines each delivery adds (default 2)")
    parser.add_argument("--duplicates", type=float, default=0.01, help="share of deliveries retried (default 0.01)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--setup-timeout", type=float, default=120.0, help="seconds for the jobs to start")
    parser.add_argument("--phase-timeout", type=float, default=180.0, help="hard deadline of a load phase")
    parser.add_argument("--profile", action="store_true", help="run the server under cProfile and print the top")
    parser.add_argument("--profile-lines", type=int, default=35)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, data dir, plans)")
    parser.add_argument("--loadgen", type=Path, metavar="PLAN", help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    if args.loadgen:
        return run_loadgen(args.loadgen)
    stop_on_sigterm()
    if args.jobs < 1 or args.concurrency < 1 or args.concurrency > args.jobs:
        raise SystemExit("--jobs must be at least 1 and at least --concurrency")
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    total_lines = args.lines_per_event * (args.events_per_job + math.ceil(args.rate * args.rate_seconds / args.jobs))
    total_steps = STEP_STRIDE * total_lines
    print(
        f"webhook ingestion: {args.jobs} running Replicate jobs, signed deliveries to {HOOK_PATH}; load generator "
        f"on {loop}; load average {load_average()}"
    )
    secret = "whsec_" + base64.b64encode(os.urandom(32)).decode()
    results: list[PhaseResult] = []
    try:
        with scratch_dir("bench-webhooks-", keep=args.keep) as work:
            fake, fake_port = start_fake(work, secret)
            with fake:
                port = free_port()
                env = server_env(
                    plugins=False,
                    extra={
                        "CLOUDTUNER_REPLICATE_API_URL": f"http://{HOST}:{fake_port}/v1",
                        "REPLICATE_API_TOKEN": TOKEN,
                        "CLOUDTUNER_PUBLIC_URL": f"http://{HOST}:{port}",
                        "CLOUDTUNER_RECONCILE_INTERVAL_SECONDS": "600",
                    },
                )
                profile_out = work / "server.prof" if args.profile else None
                argv = server_argv(port, work / "data", profile_out)
                with Child(argv, env=env, log_path=work / "server.log") as server:
                    wait_ready(server, port)
                    began = time.perf_counter()
                    jobs = create_jobs(port, fake_port, work, args, total_steps)
                    print(
                        f"setup: {len(jobs)} jobs submitted, started at the fake Replicate and running in "
                        f"{time.perf_counter() - began:.1f} s"
                    )
                    builder = DeliveryBuilder(
                        secret,
                        port,
                        total_steps,
                        lines_per_event=args.lines_per_event,
                        duplicates=args.duplicates,
                        seed=args.seed,
                    )
                    servers = Servers(server=server, fake=fake, port=port)
                    results.append(capacity_phase(jobs, builder, servers, work, args))
                    show(results[-1])
                    results.append(rate_phase(jobs, builder, servers, work, args))
                    show(results[-1])
                    counts = check_jobs(port, jobs)
                    sizes = sorted(len(j.final_logs) for j in jobs)
                    print(
                        f"  jobs afterwards: {', '.join(f'{s} {n}' for s, n in sorted(counts.items()))}; each one's "
                        f"status, progress and log match its last delivery (logs up to {sizes[-1] // 1024} KiB)"
                    )
                    print(f"  load average now {load_average()}")
                if profile_out is not None:
                    print_profile(profile_out, args.profile_lines)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    capacity, rate = results
    kept_up = rate.events_per_second >= 0.97 * args.rate
    print(
        f"{verdict(capacity.events_per_second >= TARGET_EVENTS_PER_SECOND)}: {capacity.events_per_second:.0f} "
        f"signed events/s at most ({args.concurrency} connections, closed loop); target >= "
        f"{TARGET_EVENTS_PER_SECOND:.0f}"
    )
    print(
        f"{verdict(rate.p99_ms < TARGET_P99_MS and kept_up)}: p99 {rate.p99_ms:.2f} ms with {args.rate:g} events/s "
        f"offered ({rate.events_per_second:.0f}/s answered); target p99 < {TARGET_P99_MS:g} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
