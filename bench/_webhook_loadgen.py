"""The load generator of ``webhook_ingestion.py``: a child process that sends a plan's deliveries.

Not a benchmark itself. The parent stores the requests in one binary file and their order and
expectations in a JSON plan (:func:`write_plan`) and runs ``webhook_ingestion.py --loadgen PLAN``,
which calls :func:`run_loadgen`. It sends over keep-alive connections (on uvloop when it is
installed), either as a closed loop (:func:`closed_loop`: each connection sends its own list, one
after another) or an open loop (:func:`open_loop`: deliveries fall due at a fixed rate), checks
every reply (:class:`Checker`) and writes its timings, the replies' tally and its CPU seconds to
the plan's ``out`` file.
"""

from __future__ import annotations

import asyncio
import json
import resource
import time
from pathlib import Path
from typing import Any

from _harness import HOST
from _loadgen import read_reply
from _webhook_deliveries import Delivery


def write_plan(path: Path, plan: dict[str, Any], deliveries: list[Delivery]) -> None:
    """Store requests in one binary file and their order and expectations in a JSON plan."""
    blob = path.with_suffix(".bin")
    entries = []
    offset = 0
    with blob.open("wb") as out:
        for item in deliveries:
            out.write(item.request)
            entries.append([offset, len(item.request), item.job, item.duplicate, item.status])
            offset += len(item.request)
    plan["blob"] = str(blob)
    plan["entries"] = entries
    path.write_text(json.dumps(plan))


async def _read_reply(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    status, body, keep = await read_reply(reader)
    if not keep:
        raise ConnectionError("the server closed a keep-alive connection")
    return status, body


class Checker:
    """Checks replies against what each delivery must get."""

    def __init__(self, job_ids: list[str]) -> None:
        self.job_ids = job_ids
        self.statuses: dict[int, int] = {}
        self.bad: list[str] = []
        self.bad_count = 0
        self.duplicates = 0

    def check(self, entry: list[Any], status: int, body: bytes) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1
        _, _, job, duplicate, expected = entry
        problem = ""
        try:
            reply = json.loads(body)
        except ValueError:
            reply = None
        if status != 200 or not isinstance(reply, dict):
            problem = f"HTTP {status} {body[:200]!r}"
        elif reply.get("duplicate") is not duplicate:
            problem = f"duplicate={reply.get('duplicate')} (expected {duplicate}): {reply}"
        elif not duplicate and (reply.get("job_id"), reply.get("status")) != (self.job_ids[job], expected):
            problem = f"expected job {self.job_ids[job]} {expected}, got {reply}"
        self.duplicates += bool(duplicate)
        if problem:
            self.bad_count += 1
            if len(self.bad) < 10:
                self.bad.append(problem)


async def closed_loop(plan: dict[str, Any], blob: memoryview, checker: Checker) -> dict[str, Any]:
    """Each connection sends its own list of deliveries, one after another."""
    entries = plan["entries"]
    perf = time.perf_counter

    async def connection(indexes: list[int], times: list[list[float]]) -> float:
        reader, writer = await asyncio.open_connection(HOST, plan["port"])
        try:
            for index in indexes:
                offset, length = entries[index][0], entries[index][1]
                began = perf()
                writer.write(blob[offset : offset + length])
                status, body = await _read_reply(reader)
                times.append([began, perf()])
                checker.check(entries[index], status, body)
        finally:
            writer.close()
        return perf()

    times: list[list[list[float]]] = [[] for _ in plan["connections"]]
    started = perf()
    finished = await asyncio.wait_for(
        asyncio.gather(*(connection(indexes, times[n]) for n, indexes in enumerate(plan["connections"]))),
        timeout=plan["deadline"],
    )
    return {"started": started, "finished": list(finished), "times": times}


async def open_loop(plan: dict[str, Any], blob: memoryview, checker: Checker) -> dict[str, Any]:
    """Deliveries fall due at a fixed rate; each waits for its job's previous one and a free connection."""
    entries = plan["entries"]
    rate = plan["rate"]
    perf = time.perf_counter
    pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(plan["pool"]):
        pool.put_nowait(await asyncio.open_connection(HOST, plan["port"]))
    done_events = [asyncio.Event() for _ in entries]
    previous: dict[int, int] = {}
    after = []
    for index, entry in enumerate(entries):
        after.append(previous.get(entry[2], -1))
        previous[entry[2]] = index
    times: list[list[float]] = [[0.0, 0.0, 0.0] for _ in entries]

    async def send(index: int, due: float) -> None:
        if after[index] >= 0:
            await done_events[after[index]].wait()
        reader, writer = await pool.get()
        try:
            offset, length = entries[index][0], entries[index][1]
            sent = perf()
            writer.write(blob[offset : offset + length])
            status, body = await _read_reply(reader)
            times[index] = [due, sent, perf()]
            checker.check(entries[index], status, body)
        finally:
            pool.put_nowait((reader, writer))
            done_events[index].set()

    tasks = []
    started = perf()
    for index in range(len(entries)):
        due = started + index / rate
        delay = due - perf()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(send(index, due)))
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=plan["deadline"])
    while not pool.empty():
        pool.get_nowait()[1].close()
    return {"started": started, "times": times}


def run_loadgen(plan_path: Path) -> int:
    """Send the deliveries of the plan at ``plan_path``, check every reply, write the result; return 0."""
    plan = json.loads(plan_path.read_text())
    blob = memoryview(Path(plan["blob"]).read_bytes())
    checker = Checker(plan["job_ids"])
    runner = closed_loop if plan["mode"] == "closed" else open_loop
    usage = resource.getrusage(resource.RUSAGE_SELF)
    try:
        import uvloop

        result = uvloop.run(runner(plan, blob, checker))
    except ImportError:
        result = asyncio.run(runner(plan, blob, checker))
    after = resource.getrusage(resource.RUSAGE_SELF)
    result.update(
        statuses=checker.statuses,
        bad=checker.bad,
        bad_count=checker.bad_count,
        duplicates=checker.duplicates,
        cpu_seconds=(after.ru_utime + after.ru_stime) - (usage.ru_utime + usage.ru_stime),
    )
    Path(plan["out"]).write_text(json.dumps(result))
    return 0
