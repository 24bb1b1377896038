"""Benchmark: `cloudtuner server` start time and idle memory.

Targets (issue 2): the server is **ready to answer in under 2 s** (first 200 from
``/api/health``, timed from process start), with a fresh data dir and with an existing one,
median of several runs; and its **idle resident memory is under 150 MB** (VmRSS of the server
process after it has served some requests and sat idle a few seconds).

Each start runs ``cloudtuner server`` (the console script, so the interpreter start and every
import count) on a free 127.0.0.1 port and polls ``/api/health`` every 5 ms until it answers 200;
the time at which the server prints its "serving on" line (after settings, app creation and the
store check, before uvicorn starts) is recorded too. One untimed start first warms the page
cache. Fresh runs each get a data dir that does not exist yet; existing runs reuse the data dir of
the memory run, which holds a migrated store with jobs in it.

For memory, the server serves ``--requests`` of each of: health, submit (scripted provider, so
the scheduler dispatches and syncs the jobs), list, job detail, then ``/openapi.json`` and
``/docs``, sits idle ``--idle-seconds``, and VmRSS (and the peak, VmHWM) is read from
``/proc/<pid>/status``.

    .venv/bin/python bench/server_startup.py              # 5 starts of each kind, ~30 s
    .venv/bin/python bench/server_startup.py --runs 9 --idle-seconds 10
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from _harness import (
    SUBMIT_BODY,
    BenchError,
    Child,
    KeepAliveClient,
    cloudtuner_server_argv,
    cpu_seconds,
    free_port,
    load_average,
    median,
    rss_mib,
    scratch_dir,
    server_env,
    stop_on_sigterm,
    verdict,
    wait_ready,
)

TARGET_READY_SECONDS = 2.0
TARGET_RSS_MB = 150.0
SERVING_LINE = "cloudtuner: serving on"


@dataclass(frozen=True)
class Start:
    """One start: seconds to the "serving on" line and to the first 200, and CPU seconds used by then."""

    serving_line: float | None
    ready: float
    cpu: float


def environment(*, plugins: bool, pycache: Path | None) -> dict[str, str]:
    """Return the server's environment; with ``pycache``, bytecode is cached there across starts."""
    env = server_env(plugins=plugins)
    if pycache is not None:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(pycache)
    return env


def start_once(data_dir: Path, log_path: Path, env: dict[str, str]) -> Start:
    port = free_port()
    child = Child(cloudtuner_server_argv(port, data_dir), env=env, log_path=log_path, timestamps=True)
    with child:
        ready = wait_ready(child, port, deadline_seconds=60)
        cpu = cpu_seconds(child.pid)
        return Start(serving_line=child.line_time(SERVING_LINE), ready=ready, cpu=cpu)


def exercise(port: int, requests: int, *, plugins: bool) -> int:
    """Send a mix of requests; return how many jobs were submitted."""
    body = json.dumps(SUBMIT_BODY).encode()
    submitted = 0
    with KeepAliveClient(port) as client:
        for _ in range(requests):
            client.get_json("/api/health")
            if plugins:
                status, reply = client.request("POST", "/api/cloud/jobs/submit?provider=scripted", body)
                if status != 202:
                    raise BenchError(f"submit: HTTP {status}: {reply[:200]!r}")
                submitted += 1
            page = client.get_json("/api/cloud/jobs?limit=50")
            if page["jobs"]:
                client.get_json(f"/api/cloud/jobs/{page['jobs'][0]['job_id']}")
        client.get_json("/openapi.json")
        status, _ = client.request("GET", "/docs")
        if status != 200:
            raise BenchError(f"/docs: HTTP {status}")
    return submitted


def show_starts(label: str, starts: list[Start]) -> float:
    readies = [s.ready for s in starts]
    lines = [s.serving_line for s in starts if s.serving_line is not None]
    serving = f"; 'serving on' printed at {median(lines):.2f} s" if lines else ""
    result = median(readies)
    print(
        f"  {label:<20} ready: median {result:.2f} s, min {min(readies):.2f}, max {max(readies):.2f}{serving}; "
        f"CPU used by then {median([s.cpu for s in starts]):.2f} s  (runs: {', '.join(f'{r:.2f}' for r in readies)})"
    )
    return result


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="timed starts of each kind (default 5)")
    parser.add_argument("--requests", type=int, default=30, help="requests of each kind before idling (default 30)")
    parser.add_argument("--idle-seconds", type=float, default=5.0, help="idle time before reading RSS (default 5)")
    parser.add_argument("--no-plugin", action="store_true", help="start without the scripted provider (no submits)")
    parser.add_argument(
        "--no-bytecode-cache",
        action="store_true",
        help="leave PYTHONDONTWRITEBYTECODE as the environment has it (by default bytecode is cached in the "
        "temporary folder across starts, as a normal installation caches it)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    stop_on_sigterm()
    plugins = not args.no_plugin
    try:
        with scratch_dir("bench-startup-", keep=args.keep) as work:
            pycache = None if args.no_bytecode_cache else work / "pycache"
            env = environment(plugins=plugins, pycache=pycache)
            warm = start_once(work / "warm-up", work / "warm-up.log", env)
            no_write = os.environ.get("PYTHONDONTWRITEBYTECODE", "")
            bytecode = "cached (private PYTHONPYCACHEPREFIX)" if pycache else f"PYTHONDONTWRITEBYTECODE={no_write!r}"
            print(f"cloudtuner server start; bytecode {bytecode}; load average {load_average()}")
            print(f"  untimed warm-up start: ready in {warm.ready:.2f} s")
            fresh = [start_once(work / f"fresh-{n}", work / f"fresh-{n}.log", env) for n in range(args.runs)]
            fresh_median = show_starts("fresh data dir", fresh)

            data_dir = work / "existing"
            port = free_port()
            child = Child(
                cloudtuner_server_argv(port, data_dir), env=server_env(plugins=plugins), log_path=work / "m.log"
            )
            with child:
                wait_ready(child, port)
                after_start = rss_mib(child.pid)
                submitted = exercise(port, args.requests, plugins=plugins)
                after_requests = rss_mib(child.pid)
                time.sleep(args.idle_seconds)
                if child.exited() is not None:
                    raise BenchError(f"the server exited:\n{child.output()}")
                idle = rss_mib(child.pid)
                peak = rss_mib(child.pid, "VmHWM")

            existing = [start_once(data_dir, work / f"existing-{n}.log", env) for n in range(args.runs)]
            existing_median = show_starts(f"existing ({submitted} jobs)", existing)
            print("memory (VmRSS of the server process)")
            print(f"  just after ready       {after_start:6.1f} MiB")
            print(
                f"  after the requests     {after_requests:6.1f} MiB   "
                f"({args.requests} x health, submit, list, detail; docs)"
            )
            print(f"  idle {args.idle_seconds:g} s later          {idle:6.1f} MiB   (peak VmHWM {peak:.1f} MiB)")
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    ready_ok = max(fresh_median, existing_median) < TARGET_READY_SECONDS
    idle_mb = idle * 1024 * 1024 / 1e6
    print(
        f"{verdict(ready_ok)}: ready in {fresh_median:.2f} s (fresh) and {existing_median:.2f} s (existing), "
        f"median of {args.runs}; target < {TARGET_READY_SECONDS:g} s"
    )
    print(
        f"{verdict(idle_mb < TARGET_RSS_MB)}: idle RSS {idle_mb:.1f} MB ({idle:.1f} MiB); target < {TARGET_RSS_MB:g} MB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
