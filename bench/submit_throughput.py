"""Benchmark: job submit throughput, side by side with a bare FastAPI endpoint.

Target (issue 2): ``POST /api/cloud/jobs/submit?provider=scripted`` with an inline config serves at
least **half** the requests per second of a bare FastAPI endpoint on the same server settings.

Each round starts, loads and stops two servers, one after the other, under the same uvicorn
settings (one process, ``loop``/``http`` on "auto", i.e. uvloop and httptools when installed,
access log off, log level warning), on free 127.0.0.1 ports:

* **bare**: a FastAPI app with one POST endpoint taking the same JSON body as a ``dict`` and
  returning a small JSON reply, run by ``uvicorn.Server`` exactly as ``cloudtuner server`` runs
  its app (``cloudtuner.api.serve.serve``);
* **cloudtuner**: ``cloudtuner server`` itself, on a fresh data dir, with the scripted provider
  from ``tests/fakes`` loaded as a plugin and the real scheduler dispatching and syncing the jobs.

The load comes from ``bench/_loadgen.py`` in separate processes (closed loop, keep-alive
connections, fixed concurrency, warm-up, then a fixed window). Prints requests/s, p50/p99 latency
and server CPU of each (also as CPU milliseconds a request, steadier on a shared machine), the
ratio per round and its median, and a PASS/FAIL line. Every accepted submit is checked against the
jobs the list endpoint returns afterwards.

    .venv/bin/python bench/submit_throughput.py                       # 2 rounds, ~1 minute
    .venv/bin/python bench/submit_throughput.py --rounds 3 --duration 15 --concurrency 16
    .venv/bin/python bench/submit_throughput.py --scheduler off       # the API alone (informational)
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

from _harness import (
    BENCH_DIR,
    PYTHON,
    SUBMIT_BODY,
    BenchError,
    Child,
    cloudtuner_server_argv,
    count_jobs,
    cpu_seconds,
    free_port,
    load_average,
    median,
    scratch_dir,
    server_env,
    stop_on_sigterm,
    summarize,
    verdict,
    wait_ready,
)

TARGET_RATIO = 0.5
SUBMIT_PATH = "/api/cloud/jobs/submit?provider=scripted"
BARE_PATH = "/api/cloud/jobs/submit"


# --- the bare app ---------------------------------------------------------------------------------


def serve_bare(port: int) -> int:
    """Run the bare FastAPI app with the uvicorn settings of ``cloudtuner server``; return an exit code."""
    import logging

    import uvicorn
    from fastapi import FastAPI

    app = FastAPI(title="bare")

    @app.post(BARE_PATH)
    async def submit(body: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "fields": len(body)}

    logging.basicConfig(level=logging.WARNING)
    # The same arguments as cloudtuner.api.serve.serve passes (loop and http left on "auto").
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    server.run()
    return 0 if server.started else 1


# --- load ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadResult:
    """One app under load: the window's throughput and latencies, and every reply's status."""

    name: str
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    window_requests: int
    window_ok: int
    expected_replies: int
    statuses: dict[int, int]
    errors: list[str]
    server_cpu_percent: float
    loadgen_cpu_percent: float

    @property
    def server_cpu_ms_per_request(self) -> float:
        """Server CPU milliseconds per request in the window: steadier than requests/s on a busy machine."""
        return 10 * self.server_cpu_percent / self.requests_per_second if self.requests_per_second else 0.0


def run_load(
    name: str,
    port: int,
    server_pid: int,
    *,
    path: str,
    expect: str,
    ok_status: int,
    args: argparse.Namespace,
    work: Path,
) -> LoadResult:
    """Load one server with ``args.processes`` load generator processes; return what they measured."""
    body_file = work / "body.json"
    body_file.write_text(json.dumps(SUBMIT_BODY))
    per_process = [
        args.concurrency // args.processes + (i < args.concurrency % args.processes) for i in range(args.processes)
    ]
    start_at = time.time() + 0.5
    children: list[Child] = []
    outs: list[Path] = []
    try:
        for index, concurrency in enumerate(per_process):
            out = work / f"{name}-load-{index}.json"
            outs.append(out)
            argv = [
                PYTHON,
                str(BENCH_DIR / "_loadgen.py"),
                f"--port={port}",
                f"--path={path}",
                f"--body-file={body_file}",
                f"--expect={expect}",
                f"--concurrency={concurrency}",
                f"--warmup={args.warmup}",
                f"--duration={args.duration}",
                f"--max-requests={args.max_requests}",
                f"--start-at={start_at}",
                f"--out={out}",
            ]
            children.append(Child(argv, log_path=work / f"{name}-load-{index}.log").start())
        # Server CPU over the measured window (the load generators start their window together).
        time.sleep(max(0.0, start_at + args.warmup - time.time()))
        cpu_start = cpu_seconds(server_pid)
        time.sleep(max(0.0, start_at + args.warmup + args.duration - time.time()))
        cpu_end = cpu_seconds(server_pid)
        deadline = time.time() + 30
        for child in children:
            while child.exited() is None:
                if time.time() > deadline:
                    raise BenchError(f"load generator did not finish:\n{child.output()}")
                time.sleep(0.05)
            if child.exited() != 0:
                raise BenchError(f"load generator failed:\n{child.output()}")
    finally:
        for child in children:
            child.stop()
    results = [json.loads(out.read_text()) for out in outs]
    latencies = [ms for result in results for ms in result["latencies_ms"]]
    statuses: dict[int, int] = {}
    window_ok = 0
    for result in results:
        for code, count in result["statuses"].items():
            statuses[int(code)] = statuses.get(int(code), 0) + count
        window_ok += result["window_statuses"].get(str(ok_status), 0)
    summary = summarize(latencies)
    return LoadResult(
        name=name,
        requests_per_second=summary.count / args.duration,
        p50_ms=summary.p50,
        p99_ms=summary.p99,
        window_requests=summary.count,
        window_ok=window_ok,
        expected_replies=sum(r["expected_replies"] for r in results),
        statuses=statuses,
        errors=[e for r in results for e in r["errors"]],
        server_cpu_percent=100 * (cpu_end - cpu_start) / args.duration,
        loadgen_cpu_percent=100 * sum(r["cpu_seconds"] for r in results) / args.duration,
    )


def show(result: LoadResult) -> None:
    print(
        f"  {result.name:<11} {result.requests_per_second:8.0f} req/s   p50 {result.p50_ms:6.2f} ms   "
        f"p99 {result.p99_ms:6.2f} ms   server CPU {result.server_cpu_percent:4.0f} % "
        f"({result.server_cpu_ms_per_request:.2f} ms a request)   "
        f"load generator CPU {result.loadgen_cpu_percent:4.0f} %   ({result.window_requests} requests)"
    )
    if result.window_ok != result.window_requests or result.errors:
        print(f"    !! statuses {result.statuses}, errors {result.errors[:3]}")


# --- rounds -------------------------------------------------------------------------------------


def bare_round(args: argparse.Namespace, work: Path) -> LoadResult:
    port = free_port()
    argv = [PYTHON, str(Path(__file__).resolve()), "--serve-bare", str(port)]
    with Child(argv, env=server_env(plugins=False), log_path=work / "bare.log") as server:
        # The bare app has only its POST endpoint: a 405 to a GET says it is up.
        wait_ready(server, port, path=BARE_PATH, ok_statuses=(405,))
        result = run_load("bare", port, server.pid, path=BARE_PATH, expect='"ok"', ok_status=200, args=args, work=work)
    show(result)
    if result.expected_replies != result.window_requests:
        raise BenchError("the bare app did not answer every request with its JSON reply")
    return result


def cloudtuner_round(args: argparse.Namespace, work: Path) -> LoadResult:
    port = free_port()
    data_dir = work / "data"
    argv = cloudtuner_server_argv(port, data_dir)
    extra = {"CLOUDTUNER_SCHEDULER_ENABLED": "false"} if args.scheduler == "off" else None
    with Child(argv, env=server_env(plugins=True, extra=extra), log_path=work / "cloudtuner.log") as server:
        wait_ready(server, port)
        result = run_load(
            "cloudtuner", port, server.pid, path=SUBMIT_PATH, expect='"job_id"', ok_status=202, args=args, work=work
        )
        show(result)
        accepted = result.statuses.get(202, 0)
        counts = count_jobs(port)
    stored = sum(counts.values())
    by_status = ", ".join(f"{status} {count}" for status, count in sorted(counts.items()))
    print(f"    jobs: {accepted} submits accepted (202), {stored} jobs listed afterwards ({by_status})")
    if stored != accepted or result.expected_replies != result.window_requests:
        raise BenchError(f"submits and stored jobs disagree: {accepted} accepted, {stored} stored")
    return result


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2, help="bare + cloudtuner pairs (default 2)")
    parser.add_argument("--concurrency", type=int, default=32, help="keep-alive connections in all (default 32)")
    parser.add_argument("--processes", type=int, default=1, help="load generator processes (default 1)")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of warm-up per app (default 3)")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per app (default 10)")
    parser.add_argument("--max-requests", type=int, default=500_000, help="per load generator process")
    parser.add_argument(
        "--scheduler",
        choices=("on", "off"),
        default="on",
        help="off: cloudtuner serves the API only (CLOUDTUNER_SCHEDULER_ENABLED=false), as when another "
        "process runs the scheduler; the jobs stay queued. Informational: the target is judged with it on",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, data dir)")
    parser.add_argument("--serve-bare", type=int, metavar="PORT", help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    if args.serve_bare:
        return serve_bare(args.serve_bare)
    stop_on_sigterm()
    if not 1 <= args.processes <= args.concurrency:
        raise SystemExit("--processes must be between 1 and --concurrency")
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    print(
        f"submit throughput: uvicorn {version('uvicorn')} (loop {loop}, http {http}, 1 process, no access log), "
        f"fastapi {version('fastapi')}; load: {args.concurrency} keep-alive connections in {args.processes} "
        f"process(es), {args.warmup:g} s warm-up, {args.duration:g} s measured; scheduler {args.scheduler}; "
        f"load average {load_average()}"
    )
    ratios: list[float] = []
    try:
        for round_number in range(1, args.rounds + 1):
            print(f"round {round_number}/{args.rounds}")
            with scratch_dir("bench-submit-", keep=args.keep) as work:
                bare = bare_round(args, work)
                ours = cloudtuner_round(args, work)
            ratio = ours.requests_per_second / bare.requests_per_second
            ratios.append(ratio)
            print(f"  ratio       {ratio:8.3f}  (cloudtuner / bare)")
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    result = median(ratios)
    figures = f"median of {len(ratios)} rounds: {', '.join(f'{r:.3f}' for r in ratios)}; target >= {TARGET_RATIO}"
    if args.scheduler == "off":
        print(f"API only (scheduler off, not the target's setting): {result:.3f} of bare FastAPI's ({figures})")
        return 0
    print(f"{verdict(result >= TARGET_RATIO)}: submit throughput is {result:.3f} of bare FastAPI's ({figures})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
