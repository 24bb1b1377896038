"""A closed-loop HTTP/1.1 load generator for the benchmarks (run as a separate process).

Each of ``--concurrency`` workers holds one keep-alive connection (asyncio streams, on uvloop
when it is installed) and sends one hand-written request after another, waiting for each reply.
All processes of one load start at the same wall-clock time (``--start-at``): a warm-up, then a
measured window of ``--duration`` seconds, in which requests that both start and end are counted.
A run is bounded by ``--max-requests`` and a hard deadline. Writes a JSON result to ``--out``:
counts by status for the whole run, and for the window the request count, latencies (ms), the
replies that contained ``--expect``, and this process's CPU seconds.

    python bench/_loadgen.py --port 8001 --path /x --body-file body.json --out result.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"


@dataclass
class Tally:
    """What one process saw."""

    statuses: dict[int, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    window_statuses: dict[int, int] = field(default_factory=dict)
    expected_replies: int = 0
    total_requests: int = 0


async def read_reply(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """Return (status, body, server keeps the connection) of one HTTP/1.1 reply."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = -1
    chunked = False
    keep = True
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"connection":
            keep = b"close" not in value.lower()
    if chunked:
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            parts.append(await reader.readexactly(size + 2))
        return status, b"".join(p[:-2] for p in parts), keep
    if length >= 0:
        return status, await reader.readexactly(length), keep
    return status, await reader.read(), False


async def worker(
    port: int,
    request: bytes,
    expect: bytes,
    window: tuple[float, float],
    max_requests: int,
    tally: Tally,
) -> None:
    """Send requests on one connection until the window closes or the request budget is spent."""
    start, end = window
    perf = time.perf_counter
    writer: asyncio.StreamWriter | None = None
    try:
        reader, writer = await asyncio.open_connection(HOST, port)
        while tally.total_requests < max_requests:
            began = perf()
            if began >= end:
                return
            tally.total_requests += 1
            writer.write(request)
            status, body, keep = await read_reply(reader)
            done = perf()
            tally.statuses[status] = tally.statuses.get(status, 0) + 1
            if began >= start and done <= end:
                tally.latencies_ms.append((done - began) * 1000)
                tally.window_statuses[status] = tally.window_statuses.get(status, 0) + 1
                if expect and expect in body:
                    tally.expected_replies += 1
            if not keep:
                writer.close()
                reader, writer = await asyncio.open_connection(HOST, port)
    except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
        tally.errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        if writer is not None:
            writer.close()


async def run(args: argparse.Namespace) -> dict[str, object]:
    body = Path(args.body_file).read_bytes() if args.body_file else b""
    head = f"{args.method} {args.path} HTTP/1.1\r\nHost: {HOST}:{args.port}\r\n"
    if body:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    request = (head + "\r\n").encode() + body
    # Wall-clock alignment across processes; latencies use perf_counter.
    delay = max(0.0, args.start_at - time.time())
    await asyncio.sleep(delay)
    now = time.perf_counter()
    start = now + args.warmup
    end = start + args.duration
    tally = Tally()
    tasks = [
        asyncio.create_task(worker(args.port, request, args.expect.encode(), (start, end), args.max_requests, tally))
        for _ in range(args.concurrency)
    ]
    # CPU time of this process in the measured window.
    await asyncio.sleep(max(0.0, start - time.perf_counter()))
    cpu_start = resource.getrusage(resource.RUSAGE_SELF)
    await asyncio.sleep(max(0.0, end - time.perf_counter()))
    cpu_end = resource.getrusage(resource.RUSAGE_SELF)
    # Hard deadline: requests still out after the window get args.grace seconds.
    _, pending = await asyncio.wait(tasks, timeout=args.grace)
    for task in pending:
        task.cancel()
    if pending:
        tally.errors.append(f"{len(pending)} connections still waiting {args.grace} s after the window")
        await asyncio.gather(*pending, return_exceptions=True)
    cpu = (cpu_end.ru_utime + cpu_end.ru_stime) - (cpu_start.ru_utime + cpu_start.ru_stime)
    return {
        "statuses": tally.statuses,
        "window_statuses": tally.window_statuses,
        "errors": tally.errors[:20],
        "error_count": len(tally.errors),
        "latencies_ms": tally.latencies_ms,
        "expected_replies": tally.expected_replies,
        "duration": args.duration,
        "cpu_seconds": cpu,
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--method", default="POST")
    parser.add_argument("--path", required=True)
    parser.add_argument("--body-file", default="")
    parser.add_argument("--expect", default="", help="count replies containing this text")
    parser.add_argument("--concurrency", type=int, default=16, help="connections of this process")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--max-requests", type=int, default=2_000_000)
    parser.add_argument("--grace", type=float, default=10.0)
    parser.add_argument("--start-at", type=float, default=0.0, help="time.time() at which to start")
    parser.add_argument("--out", required=True)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    try:
        import uvloop

        result = uvloop.run(run(args))
    except ImportError:
        result = asyncio.run(run(args))
    Path(args.out).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
