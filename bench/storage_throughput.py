"""Benchmark: PUT and GET of a 1 GiB object through boto3, cloudtuner's S3 endpoint against moto.

Targets (issue 4): through unmodified ``boto3``, the built-in endpoint (``cloudtuner server``,
``/api/cloud/storage``) moves a 1 GiB object **at least 3 times as fast as moto in server mode**
in the same run, and **at least half as fast as copying the file on the same disk**; the server's
memory stays flat (**peak RSS under 150 MB**) during the transfers.

What it does, in a scratch folder (``--dir``, default a new folder under /tmp; everything is on
one disk):

1. Writes a file of random bytes (``--size-mb``, default 1024) and reads it once (page cache).
2. Starts ``cloudtuner server`` (fresh data dir, SQLite, no scheduler work) and creates an
   admin storage key over its API; starts ``moto_server`` on another loopback port.
3. For ``--rounds`` rounds (default 2), back to back so that the machine's load hits all alike:
   copies the file on the same disk (``dd bs=1M``: read and write, no fsync, as the endpoint
   writes); then, for each endpoint, ``upload_file`` (boto3's defaults: multipart, 8 MiB parts,
   10 threads) and ``download_file`` into the scratch folder, timed, with the downloaded bytes
   checked against the original's SHA-256 (outside the timing).
4. Samples the cloudtuner server's RSS every 20 ms during its transfers (``/proc``).

Prints MiB/s per operation and round, the best round's ratios (cloudtuner / moto, cloudtuner /
copy) and PASS/FAIL for each target, the server's RSS before and at its peak, and the load
average (the machine is shared: read the figures with it).

    .venv/bin/python bench/storage_throughput.py
    .venv/bin/python bench/storage_throughput.py --size-mb 256 --rounds 1   # quick run
    .venv/bin/python bench/storage_throughput.py --profile                  # server under cProfile
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _harness import (
    HOST,
    PYTHON,
    REPO,
    BenchError,
    Child,
    cloudtuner_server_argv,
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

MIB = 1024 * 1024
TARGET_VS_MOTO = 3.0
TARGET_VS_COPY = 0.5
TARGET_PEAK_RSS_BYTES = 150 * 1000 * 1000
BUCKET = "bench"


@dataclass
class Round:
    """One round's timings (seconds)."""

    copy: float = 0.0
    put: dict[str, float] = field(default_factory=dict)
    get: dict[str, float] = field(default_factory=dict)


class RssSampler:
    """Samples a process's RSS in a thread while a ``with`` block runs."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self.pid = pid
        self.interval = interval
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, rss_mib(self.pid))
            except (OSError, BenchError):
                return
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def write_random_file(path: Path, size: int) -> str:
    """Write ``size`` random bytes to ``path``; return their SHA-256."""
    digest = hashlib.sha256()
    block = os.urandom(4 * MIB)
    with path.open("wb") as handle:
        left, counter = size, 0
        while left > 0:
            # Cheap to make, never the same twice: a counter folded into a random block.
            chunk = counter.to_bytes(8, "little") + block[8 : min(left, len(block))]
            chunk = chunk[: min(left, len(block))]
            handle.write(chunk)
            digest.update(chunk)
            left -= len(chunk)
            counter += 1
    return digest.hexdigest()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(8 * MIB):
            digest.update(chunk)
    return digest.hexdigest()


def timed(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def copy_on_disk(source: Path, target: Path) -> float:
    """Copy with dd (1 MiB reads and writes, no fsync); return seconds."""
    target.unlink(missing_ok=True)
    seconds = timed(
        lambda: subprocess.run(
            ["dd", f"if={source}", f"of={target}", "bs=1M", "status=none"], check=True, stdin=subprocess.DEVNULL
        )
    )
    target.unlink()
    return seconds


def s3_client(endpoint: str, key: str, secret: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2, "mode": "standard"}),
    )


def create_admin_key(port: int) -> tuple[str, str]:
    request = urllib.request.Request(
        f"http://{HOST}:{port}/api/cloud/storage/credentials",
        data=json.dumps({"name": "bench"}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        body = json.loads(reply.read())
    return body["access_key_id"], body["secret_access_key"]


def transfer(client: Any, source: Path, target: Path, expected: str, key: str) -> tuple[float, float]:
    """Upload then download the file; check the bytes; return (put seconds, get seconds)."""
    put = timed(lambda: client.upload_file(str(source), BUCKET, key))
    target.unlink(missing_ok=True)
    get = timed(lambda: client.download_file(BUCKET, key, str(target)))
    if sha256_of(target) != expected:
        raise BenchError(f"the object read back from {client.meta.endpoint_url} differs from the file sent")
    target.unlink()
    client.delete_object(Bucket=BUCKET, Key=key)
    return put, get


def rate(size: int, seconds: float) -> float:
    return size / MIB / seconds if seconds > 0 else float("inf")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=1024, help="object size in MiB (default 1024)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of copy + both endpoints (default 2)")
    parser.add_argument("--dir", type=Path, default=None, help="scratch folder (default: a new one under /tmp)")
    parser.add_argument("--profile", action="store_true", help="run the server under cProfile; print its top functions")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = parser.parse_args()
    stop_on_sigterm()
    size = args.size_mb * MIB
    print(f"storage throughput: {args.size_mb} MiB object, {args.rounds} rounds; load average {load_average()}")
    with scratch_dir("ct-bench-storage-", keep=args.keep) as scratch:
        root = args.dir or scratch
        root.mkdir(parents=True, exist_ok=True)
        source, target = root / "object.bin", root / "readback.bin"
        expected = write_random_file(source, size)
        sha256_of(source)  # into the page cache

        ct_port, moto_port = free_port(), free_port()
        data_dir = root / "data"
        argv = cloudtuner_server_argv(ct_port, data_dir)
        profile_path = root / "server.prof"
        if args.profile:
            argv = [PYTHON, "-m", "cProfile", "-o", str(profile_path), "-m", "cloudtuner.cli.main", *argv[1:]]
        env = server_env(plugins=False, extra={"CLOUDTUNER_SCHEDULER_ENABLED": "false"})
        moto_argv = [str(Path(PYTHON).with_name("moto_server")), "-H", HOST, "-p", str(moto_port)]
        if not Path(moto_argv[0]).exists():
            moto_argv = [PYTHON, "-m", "moto.server", "-H", HOST, "-p", str(moto_port)]
        with (
            Child(argv, env=env, log_path=root / "server.log") as server,
            Child(moto_argv, log_path=root / "moto.log") as moto,
        ):
            wait_ready(server, ct_port)
            wait_ready(moto, moto_port, path="/moto-api/", deadline_seconds=60)
            key, secret = create_admin_key(ct_port)
            clients = {
                "cloudtuner": s3_client(f"http://{HOST}:{ct_port}/api/cloud/storage", key, secret),
                "moto": s3_client(f"http://{HOST}:{moto_port}", "bench", "bench-secret"),
            }
            for client in clients.values():
                client.create_bucket(Bucket=BUCKET)
            rss_before = rss_mib(server.pid)
            peak = rss_before
            rounds: list[Round] = []
            for index in range(args.rounds):
                result = Round(copy=copy_on_disk(source, target))
                for name, client in clients.items():
                    if name == "cloudtuner":
                        with RssSampler(server.pid) as sampler:
                            put, get = transfer(client, source, target, expected, f"round-{index}.bin")
                        peak = max(peak, sampler.peak)
                    else:
                        put, get = transfer(client, source, target, expected, f"round-{index}.bin")
                    result.put[name], result.get[name] = put, get
                rounds.append(result)
                print(
                    f"round {index + 1}: copy {rate(size, result.copy):7.0f} MiB/s | "
                    + " | ".join(
                        f"{name} PUT {rate(size, result.put[name]):6.0f} GET {rate(size, result.get[name]):6.0f} MiB/s"
                        for name in clients
                    )
                )
            rss_after = rss_mib(server.pid)
        if args.profile:
            print_profile(profile_path)

    best_copy = max(rate(size, r.copy) for r in rounds)
    print(f"\nload average after: {load_average()} (a shared machine: figures are noisy)")
    print(f"copy on the same disk (dd bs=1M): best {best_copy:.0f} MiB/s")
    ok = True
    for op in ("put", "get"):
        ours = [rate(size, getattr(r, op)["cloudtuner"]) for r in rounds]
        theirs = [rate(size, getattr(r, op)["moto"]) for r in rounds]
        vs_moto = [a / b for a, b in zip(ours, theirs, strict=True)]
        vs_copy = [rate(size, getattr(r, op)["cloudtuner"]) / rate(size, r.copy) for r in rounds]
        best_vs_moto, best_vs_copy = max(ours) / max(theirs), max(ours) / best_copy
        ok_moto, ok_copy = best_vs_moto >= TARGET_VS_MOTO, best_vs_copy >= TARGET_VS_COPY
        ok = ok and ok_moto and ok_copy
        print(
            f"{op.upper()}: cloudtuner best {max(ours):.0f} MiB/s, moto best {max(theirs):.0f} MiB/s; "
            f"x{best_vs_moto:.1f} moto (median of rounds x{median(vs_moto):.1f}, target x{TARGET_VS_MOTO:.0f}) "
            f"{verdict(ok_moto)}; {best_vs_copy:.0%} of copy (median {median(vs_copy):.0%}, target "
            f"{TARGET_VS_COPY:.0%}) {verdict(ok_copy)}"
        )
    peak_ok = peak * MIB < TARGET_PEAK_RSS_BYTES
    ok = ok and peak_ok
    print(
        f"server RSS: {rss_before:.0f} MiB before, peak {peak:.0f} MiB during transfers, {rss_after:.0f} MiB after "
        f"(target peak < {TARGET_PEAK_RSS_BYTES / 1e6:.0f} MB) {verdict(peak_ok)}"
    )
    print(verdict(ok))
    return 0 if ok else 1


def print_profile(path: Path) -> None:
    import pstats

    if not path.exists():
        print("(no profile written: the server did not exit cleanly)")
        return
    stats = pstats.Stats(str(path))
    stats.sort_stats("cumulative").print_stats(25)
    stats.sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
