"""Benchmark: job listing latency at every page depth, with 100,000 jobs in the SQLite store.

Target (issue 2): ``GET /api/cloud/jobs?limit=50`` answers with **p99 under 20 ms per page, at
any page depth**.

Builds a fresh data dir: migrates its database with ``cloudtuner.db.migrate.upgrade``, then
inserts ``--jobs`` rows straight into the ``jobs`` table with SQLAlchemy Core (ids from
``new_sortable_id`` at increasing times, one job a minute on average; varied providers; a
SimpleTuner config of 20 arguments and one dataset per job; the oldest jobs finished, with
completed/failed/cancelled mixed, and some running or awaiting approval among the newest).
Running rows carry a next sync time a day ahead, so that the scheduler, which the server runs
as usual, has no provider to call during the measurement (no provider is configured).

Then starts ``cloudtuner server`` on that data dir and times sequential requests on one
keep-alive connection (``http.client`` over 127.0.0.1) for each scenario: the first page, the
pages at 25 %, 50 % and 75 % of the listing and the last page (cursors made with
``encode_cursor`` for the id just before each position, then followed through ``next_cursor``
for a chain of pages), and listings filtered by ``status=`` and ``provider=``, first pages
and deep. Every reply is checked (status 200, page size, the expected first job at each depth).
Prints p50/p95/p99/max per scenario, the server's CPU while idle, and PASS/FAIL.

    .venv/bin/python bench/list_latency.py                    # 100,000 jobs, ~1-2 minutes
    .venv/bin/python bench/list_latency.py --jobs 20000 --requests 100
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Table, create_engine, func, insert, select

from _harness import (
    BenchError,
    Child,
    KeepAliveClient,
    Summary,
    cloudtuner_server_argv,
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
from cloudtuner.core.ids import new_sortable_id
from cloudtuner.db import migrate
from cloudtuner.db.engine import Database
from cloudtuner.db.tables import JobRow
from cloudtuner.services.jobs import encode_cursor

TARGET_P99_MS = 20.0
PAGE = 50
CHAIN = 10  # pages followed through next_cursor before starting again at a scenario's first page
ACTIVE_TAIL = 1000  # the newest jobs, among which some are still running or awaiting approval

PROVIDERS = (("replicate", 0.50), ("worker", 0.30), ("local", 0.15), ("scripted", 0.05))
FINISHED = (("completed", 0.78), ("failed", 0.12), ("cancelled", 0.10))
RECENT = (("completed", 0.50), ("running", 0.30), ("failed", 0.10), ("cancelled", 0.05), ("pending_approval", 0.05))
MODELS = (
    ("flux", "black-forest-labs/FLUX.1-dev"),
    ("sdxl", "stabilityai/stable-diffusion-xl-base-1.0"),
    ("sd3", "stabilityai/stable-diffusion-3.5-large"),
    ("pixart_sigma", "PixArt-alpha/PixArt-Sigma-XL-2-1024-MS"),
)
HARDWARE = ("gpu-l40s", "gpu-a100-large", "gpu-h100", "local-rtx4090")


# --- filling the store ----------------------------------------------------------------------------


def _pick(rng: random.Random, weighted: tuple[tuple[str, float], ...]) -> str:
    return rng.choices([name for name, _ in weighted], weights=[w for _, w in weighted])[0]


def _config(rng: random.Random, index: int) -> dict[str, Any]:
    family, model = MODELS[index % len(MODELS)]
    return {
        "--model_family": family,
        "--model_type": "lora",
        "--pretrained_model_name_or_path": model,
        "--output_dir": f"/outputs/{family}-lora-{index}",
        "--max_train_steps": rng.choice((500, 1000, 2000, 4000)),
        "--learning_rate": rng.choice((1e-4, 5e-5, 2e-4)),
        "--lr_scheduler": rng.choice(("constant", "cosine", "polynomial")),
        "--lr_warmup_steps": 100,
        "--train_batch_size": rng.choice((1, 2, 4)),
        "--gradient_accumulation_steps": rng.choice((1, 2)),
        "--mixed_precision": "bf16",
        "--optimizer": rng.choice(("adamw_bf16", "optimi-lion", "prodigy")),
        "--lora_rank": rng.choice((8, 16, 32, 64)),
        "--lora_alpha": 16,
        "--seed": rng.randrange(1 << 31),
        "--resolution": 1024,
        "--checkpointing_steps": 250,
        "--validation_prompt": f"a photo of sks subject number {index} in a garden",
        "--validation_steps": 250,
        "--report_to": "none",
    }


def job_rows(count: int, *, seed: int, now: datetime) -> Iterator[dict[str, Any]]:
    """Yield ``count`` job rows, oldest first, with ids that sort by creation time."""
    rng = random.Random(seed)
    spacing_ms = 60_000
    first_ms = int(now.timestamp() * 1000) - (count + 10) * spacing_ms
    sync_later = now + timedelta(days=1)
    for index in range(count):
        created_ms = first_ms + index * spacing_ms + rng.randrange(spacing_ms - 1)
        created = datetime.fromtimestamp(created_ms / 1000, UTC)
        status = _pick(rng, RECENT if index >= count - ACTIVE_TAIL else FINISHED)
        provider = _pick(rng, PROVIDERS)
        started = status not in ("pending_approval",) and rng.random() > 0.03
        run_seconds = rng.uniform(300, 7200)
        finished = status in ("completed", "failed", "cancelled")
        total_steps = rng.choice((500, 1000, 2000))
        step = total_steps if status == "completed" else rng.randrange(total_steps)
        config = _config(rng, index)
        yield {
            "id": new_sortable_id(now_ms=created_ms),
            "owner_id": "local",
            "provider": provider,
            "status": status,
            "priority": 0,
            "config_name": rng.choice((None, "flux-lora", "sdxl-portraits", "product-shots")),
            "config": config,
            "dataloader_config": [
                {
                    "id": "training-images",
                    "type": "local",
                    "dataset_type": "image",
                    "instance_data_dir": f"/data/datasets/set-{index % 500}",
                    "caption_strategy": "textfile",
                    "resolution": 1024,
                }
            ],
            "config_snapshot": {"source": "inline", "sha256": f"{rng.getrandbits(256):064x}"},
            "tracker_run_name": f"run-{index}",
            "hardware": rng.choice(HARDWARE) if started else None,
            "publishing": None,
            "upload_consent": None,
            "idempotency_key": None,
            "provider_job_id": f"{provider}-{index:08d}" if started else None,
            "progress": {"stage": "training", "step": step, "total_steps": total_steps, "loss": round(rng.random(), 4)}
            if started
            else None,
            "cost_usd": round(run_seconds * 0.0011, 4) if started else 0.0,
            "error": "CUDA out of memory at step 412" if status == "failed" else None,
            "log_length": rng.randrange(2000, 200_000) if started else 0,
            "dispatch_attempts": 1 if started else 0,
            "dispatch_started_at": created + timedelta(seconds=2) if started else None,
            "cancel_requested_at": created + timedelta(seconds=60) if status == "cancelled" else None,
            "lease_owner": None,
            "lease_token": None,
            "lease_expires_at": None,
            "next_sync_at": sync_later if status == "running" else None,
            "created_at": created,
            "updated_at": created + timedelta(seconds=run_seconds if finished else 30),
            "started_at": created + timedelta(seconds=20) if started else None,
            "finished_at": created + timedelta(seconds=run_seconds) if finished and started else None,
        }


def complete_row(row: dict[str, Any], columns: list[Any]) -> dict[str, Any]:
    """Fill columns this script does not know (added by later migrations) with their defaults."""
    for column in columns:
        if column.name in row:
            continue
        if column.default is not None and getattr(column.default, "is_scalar", False):
            row[column.name] = column.default.arg
        elif column.nullable:
            row[column.name] = None
        elif column.server_default is None:
            raise BenchError(f"jobs.{column.name} is required and this benchmark does not fill it")
    return row


def fill_store(data_dir: Path, count: int, *, seed: int) -> list[str]:
    """Migrate a new store in ``data_dir`` and insert ``count`` jobs; return their ids, oldest first."""
    data_dir.mkdir(parents=True, mode=0o700)
    db_path = data_dir / "cloudtuner.db"

    async def _migrate() -> None:
        db = Database(f"sqlite+aiosqlite:///{db_path}")
        try:
            await migrate.upgrade(db)
        finally:
            await db.dispose()

    asyncio.run(_migrate())
    table = cast(Table, JobRow.__table__)
    columns = list(table.columns)
    engine = create_engine(f"sqlite:///{db_path}")
    ids: list[str] = []
    try:
        with engine.begin() as conn:
            batch: list[dict[str, Any]] = []
            for row in job_rows(count, seed=seed, now=datetime.now(UTC)):
                ids.append(row["id"])
                batch.append(complete_row(row, columns))
                if len(batch) == 5000:
                    conn.execute(insert(table), batch)
                    batch = []
            if batch:
                conn.execute(insert(table), batch)
        with engine.connect() as conn:
            stored = conn.execute(select(func.count()).select_from(table)).scalar_one()
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        engine.dispose()
    if stored != count or ids != sorted(ids):
        raise BenchError(f"the store holds {stored} jobs, {count} were inserted (or ids are out of order)")
    return ids


# --- measuring --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """A listing to time: its query, the position its first page starts at (newest first), checks."""

    name: str
    query: str
    start_cursor: str | None
    expect_first: str | None = None
    expect_full: bool = True


def scenarios(ids: list[str]) -> list[Scenario]:
    newest_first = ids[::-1]
    count = len(newest_first)

    def at(fraction: float) -> tuple[str | None, str | None]:
        position = min(int(count * fraction), count - PAGE)
        cursor = encode_cursor(newest_first[position - 1]) if position > 0 else None
        return cursor, newest_first[position]

    base = f"/api/cloud/jobs?limit={PAGE}"
    result = [Scenario("first page", base, None, newest_first[0])]
    for label, fraction in (("25 %", 0.25), ("50 %", 0.50), ("75 %", 0.75)):
        cursor, first = at(fraction)
        result.append(Scenario(f"page at {label}", base, cursor, first))
    cursor, first = at(1.0)
    result.append(Scenario("last page", base, cursor, first))
    mid_cursor, _ = at(0.50)
    deep_cursor, _ = at(0.90)
    result += [
        Scenario("status=failed", f"{base}&status=failed", None),
        Scenario("status=cancelled at 50 %", f"{base}&status=cancelled", mid_cursor),
        Scenario("status=running (rare)", f"{base}&status=running", None),
        Scenario("status=completed,failed", f"{base}&status=completed,failed", None),
        Scenario("provider=worker", f"{base}&provider=worker", None),
        Scenario("provider=scripted at 90 %", f"{base}&provider=scripted", deep_cursor),
        Scenario("status+provider at 50 %", f"{base}&status=failed&provider=local", mid_cursor, expect_full=False),
    ]
    return result


def time_scenario(client: KeepAliveClient, scenario: Scenario, requests: int, warmup: int) -> Summary:
    """Time ``requests`` sequential pages of a scenario (after ``warmup`` untimed ones)."""

    def path(cursor: str | None) -> str:
        return scenario.query + (f"&cursor={cursor}" if cursor else "")

    cursor = scenario.start_cursor
    chain = 0
    timings: list[float] = []
    for number in range(warmup + requests):
        began = time.perf_counter()
        status, body = client.request("GET", path(cursor))
        elapsed_ms = (time.perf_counter() - began) * 1000
        if status != 200:
            raise BenchError(f"{scenario.name}: GET {path(cursor)}: HTTP {status}: {body[:200]!r}")
        if number >= warmup:
            timings.append(elapsed_ms)
        page = _parse(body)
        jobs = page["jobs"]
        if chain == 0:
            if scenario.expect_first is not None and (not jobs or jobs[0]["job_id"] != scenario.expect_first):
                raise BenchError(f"{scenario.name}: the page does not start with job {scenario.expect_first}")
            if scenario.expect_full and len(jobs) != PAGE:
                raise BenchError(f"{scenario.name}: {len(jobs)} jobs on a page, expected {PAGE}")
        chain += 1
        cursor = page["next_cursor"]
        if cursor is None or chain == CHAIN:
            cursor, chain = scenario.start_cursor, 0
    return summarize(timings)


def _parse(body: bytes) -> dict[str, Any]:
    page: dict[str, Any] = json.loads(body)
    return page


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=100_000, help="jobs in the store (default 100,000)")
    parser.add_argument("--requests", type=int, default=300, help="timed requests per scenario (default 300)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed requests per scenario (default 20)")
    parser.add_argument("--idle-seconds", type=float, default=3.0, help="idle time over which server CPU is read")
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--keep", action="store_true", help="keep the temporary data dir")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    stop_on_sigterm()
    if args.jobs < 2 * ACTIVE_TAIL:
        raise SystemExit(f"--jobs must be at least {2 * ACTIVE_TAIL}")
    try:
        with scratch_dir("bench-list-", keep=args.keep) as work:
            data_dir = work / "data"
            began = time.perf_counter()
            ids = fill_store(data_dir, args.jobs, seed=args.seed)
            size_mb = (data_dir / "cloudtuner.db").stat().st_size / 1e6
            print(f"store: {len(ids):,} jobs inserted in {time.perf_counter() - began:.1f} s ({size_mb:.0f} MB)")
            port = free_port()
            argv = cloudtuner_server_argv(port, data_dir)
            with Child(argv, env=server_env(plugins=False), log_path=work / "server.log") as server:
                ready = wait_ready(server, port, deadline_seconds=60)
                print(f"server: ready in {ready:.2f} s on that store (pid {server.pid})")
                idle_start = cpu_seconds(server.pid)
                time.sleep(args.idle_seconds)
                idle_cpu = 100 * (cpu_seconds(server.pid) - idle_start) / args.idle_seconds
                print(f"server: {idle_cpu:.1f} % CPU while idle over {args.idle_seconds:g} s (scheduler ticks)")
                print(
                    f"{'scenario':<28} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8} {'CPU ms':>8}  "
                    f"({args.requests} sequential requests each, limit={PAGE}, keep-alive)"
                )
                print(f"{'':<28} (CPU ms: the server's CPU time per request; machine load {load_average()})")
                worst: tuple[float, str] = (0.0, "")
                with KeepAliveClient(port) as client:
                    for scenario in scenarios(ids):
                        cpu_before = cpu_seconds(server.pid)
                        summary = time_scenario(client, scenario, args.requests, args.warmup)
                        cpu_ms = 1000 * (cpu_seconds(server.pid) - cpu_before) / (args.requests + args.warmup)
                        mark = "" if summary.p99 < TARGET_P99_MS else "   <-- over target"
                        print(
                            f"{scenario.name:<28} {summary.p50:8.2f} {summary.p95:8.2f} {summary.p99:8.2f} "
                            f"{summary.max:8.2f} {cpu_ms:8.1f}{mark}"
                        )
                        worst = max(worst, (summary.p99, scenario.name))
                if server.exited() is not None:
                    raise BenchError(f"the server exited during the run:\n{server.output()}")
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    print(
        f"{verdict(worst[0] < TARGET_P99_MS)}: worst p99 {worst[0]:.2f} ms ({worst[1]}) with {args.jobs:,} jobs; "
        f"target p99 < {TARGET_P99_MS:g} ms per page at any depth"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
