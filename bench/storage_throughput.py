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
4. Samples the cloudtuner server's RSS every 20 ms during its transfers (``/proc``), and the CPU
   time each operation cost the server process and the client (this process: boto3's hashing,
   signing and socket work), which is less noisy than wall-clock time on a shared machine.
5. Also runs the same transfers against a "null" S3 server (``_s3_null_server.py``: it discards
   uploads and ``sendfile``s downloads, verifying nothing), the ceiling boto3 itself allows on this
   machine: no endpoint can beat it. ``--no-null`` skips it; ``--no-moto`` skips moto (and the
   moto target) for quick runs while profiling.

Prints MiB/s per operation and round, the best round's ratios (cloudtuner / moto, cloudtuner /
copy) and PASS/FAIL for each target, CPU seconds per GiB of server and client, the null server's
ceiling, the server's RSS before and at its peak, and the load average (the machine is shared:
read the figures with it).

    .venv/bin/python bench/storage_throughput.py
    .venv/bin/python bench/storage_throughput.py --size-mb 256 --rounds 1   # quick run
    .venv/bin/python bench/storage_throughput.py --profile                  # server under cProfile
    .venv/bin/python bench/storage_throughput.py --size-mb 512 --rounds 1 --no-moto
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import resource
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
    BENCH_DIR,
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
NULL = "null server"


@dataclass(frozen=True)
class Transfer:
    """One timed operation: wall-clock seconds and the CPU seconds of server and client."""

    seconds: float
    server_user: float
    server_sys: float
    client_cpu: float

    @property
    def server_cpu(self) -> float:
        return self.server_user + self.server_sys


@dataclass
class Round:
    """One round's timings (seconds)."""

    copy: float = 0.0
    put: dict[str, Transfer] = field(default_factory=dict)
    get: dict[str, Transfer] = field(default_factory=dict)


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


def client_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def server_cpu_seconds(pid: int) -> tuple[float, float]:
    """Return the user and the system CPU time of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def measured(work: Callable[[], object], server_pid: int) -> Transfer:
    """Run ``work``; return its wall-clock time and the CPU time it cost the server and this process."""
    (user, system), client_before = server_cpu_seconds(server_pid), client_cpu_seconds()
    seconds = timed(work)
    user_after, system_after = server_cpu_seconds(server_pid)
    return Transfer(seconds, user_after - user, system_after - system, client_cpu_seconds() - client_before)


def transfer(
    client: Any, server_pid: int, source: Path, target: Path, expected: str, key: str
) -> tuple[Transfer, Transfer]:
    """Upload then download the file; check the bytes; return the two measurements."""
    put = measured(lambda: client.upload_file(str(source), BUCKET, key), server_pid)
    target.unlink(missing_ok=True)
    get = measured(lambda: client.download_file(BUCKET, key, str(target)), server_pid)
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
    parser.add_argument("--no-moto", action="store_true", help="skip moto (and its target): quick runs")
    parser.add_argument("--no-null", action="store_true", help="skip the null server (boto3's ceiling)")
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

        ct_port, moto_port, null_port = free_port(), free_port(), free_port()
        data_dir = root / "data"
        argv = cloudtuner_server_argv(ct_port, data_dir)
        profile_path = root / "server.prof"
        if args.profile:
            argv = [PYTHON, "-m", "cProfile", "-o", str(profile_path), "-m", "cloudtuner.cli.main", *argv[1:]]
        env = server_env(plugins=False, extra={"CLOUDTUNER_SCHEDULER_ENABLED": "false"})
        moto_argv = [str(Path(PYTHON).with_name("moto_server")), "-H", HOST, "-p", str(moto_port)]
        if not Path(moto_argv[0]).exists():
            moto_argv = [PYTHON, "-m", "moto.server", "-H", HOST, "-p", str(moto_port)]
        null_argv = [
            PYTHON,
            str(BENCH_DIR / "_s3_null_server.py"),
            "--port",
            str(null_port),
            "--serve-file",
            str(source),
        ]
        with contextlib.ExitStack() as stack:
            server = stack.enter_context(Child(argv, env=env, log_path=root / "server.log"))
            wait_ready(server, ct_port)
            key, secret = create_admin_key(ct_port)
            clients = {"cloudtuner": s3_client(f"http://{HOST}:{ct_port}/api/cloud/storage", key, secret)}
            pids = {"cloudtuner": server.pid}
            if not args.no_moto:
                moto = stack.enter_context(Child(moto_argv, log_path=root / "moto.log"))
                wait_ready(moto, moto_port, path="/moto-api/", deadline_seconds=60)
                clients["moto"] = s3_client(f"http://{HOST}:{moto_port}", "bench", "bench-secret")
                pids["moto"] = moto.pid
            if not args.no_null:
                null = stack.enter_context(Child(null_argv, log_path=root / "null.log"))
                wait_ready(null, null_port, path="/")
                clients[NULL] = s3_client(f"http://{HOST}:{null_port}", "bench", "bench-secret")
                pids[NULL] = null.pid
            for client in clients.values():
                client.create_bucket(Bucket=BUCKET)
            rss_before = rss_mib(server.pid)
            peak = rss_before
            rounds: list[Round] = []
            for index in range(args.rounds):
                result = Round(copy=copy_on_disk(source, target))
                for name, client in clients.items():
                    key = f"round-{index}.bin"
                    if name == "cloudtuner":
                        with RssSampler(server.pid) as sampler:
                            put, get = transfer(client, pids[name], source, target, expected, key)
                        peak = max(peak, sampler.peak)
                    else:
                        put, get = transfer(client, pids[name], source, target, expected, key)
                    result.put[name], result.get[name] = put, get
                rounds.append(result)
                print(
                    f"round {index + 1}: copy {rate(size, result.copy):7.0f} MiB/s | "
                    + " | ".join(
                        f"{name} PUT {rate(size, result.put[name].seconds):6.0f} "
                        f"GET {rate(size, result.get[name].seconds):6.0f} MiB/s"
                        for name in clients
                    )
                )
            rss_after = rss_mib(server.pid)
        if args.profile:
            print_profile(profile_path)

    ok = report(rounds, size, list(clients))
    peak_ok = peak * MIB < TARGET_PEAK_RSS_BYTES
    ok = ok and peak_ok
    print(
        f"server RSS: {rss_before:.0f} MiB before, peak {peak:.0f} MiB during transfers, {rss_after:.0f} MiB after "
        f"(target peak < {TARGET_PEAK_RSS_BYTES / 1e6:.0f} MB) {verdict(peak_ok)}"
    )
    print(verdict(ok))
    return 0 if ok else 1


def report(rounds: list[Round], size: int, names: list[str]) -> bool:
    """Print the figures and verdicts of the rounds; return whether every throughput target passed."""
    gib = size / (1024 * MIB)
    best_copy = max(rate(size, r.copy) for r in rounds)
    print(f"\nload average after: {load_average()} (a shared machine: figures are noisy)")
    print(f"copy on the same disk (dd bs=1M): best {best_copy:.0f} MiB/s")
    ok = True
    for op in ("put", "get"):
        ours = rates_of(rounds, size, op)
        vs_copy = [ours_rate / rate(size, r.copy) for ours_rate, r in zip(ours, rounds, strict=True)]
        best_vs_copy = max(ours) / best_copy
        ok_copy = best_vs_copy >= TARGET_VS_COPY
        line = f"{op.upper()}: cloudtuner best {max(ours):.0f} MiB/s; "
        if "moto" in names:
            theirs = rates_of(rounds, size, op, "moto")
            vs_moto = [a / b for a, b in zip(ours, theirs, strict=True)]
            best_vs_moto = max(ours) / max(theirs)
            ok_moto = best_vs_moto >= TARGET_VS_MOTO
            ok = ok and ok_moto
            line += (
                f"moto best {max(theirs):.0f} MiB/s; x{best_vs_moto:.1f} moto (median of rounds "
                f"x{median(vs_moto):.1f}, target x{TARGET_VS_MOTO:.0f}) {verdict(ok_moto)}; "
            )
        ok = ok and ok_copy
        print(
            line + f"{best_vs_copy:.0%} of copy (median {median(vs_copy):.0%}, target "
            f"{TARGET_VS_COPY:.0%}) {verdict(ok_copy)}"
        )
    print(
        "CPU seconds per GiB, median of rounds: server process (user + system) | client (boto3, this process).\n"
        "  (The system time includes the kernel's copy into the page cache, slow on this VM for memory it has not\n"
        "  touched lately: compare user times across runs.)"
    )
    for name in names:
        cells = []
        for op in ("put", "get"):
            user = median([getattr(r, op)[name].server_user / gib for r in rounds])
            system = median([getattr(r, op)[name].server_sys / gib for r in rounds])
            client = median([getattr(r, op)[name].client_cpu / gib for r in rounds])
            cells.append(f"{op.upper()} server {user:4.2f} + {system:4.2f} | client {client:4.2f}")
        print(f"  {name:<11} " + "; ".join(cells))
    if NULL in names:
        put, get = max(rates_of(rounds, size, "put", NULL)), max(rates_of(rounds, size, "get", NULL))
        print(
            f"boto3 alone against a server that does nothing: PUT {put:.0f} MiB/s ({put / best_copy:.0%} of copy), "
            f"GET {get:.0f} MiB/s ({get / best_copy:.0%} of copy); cloudtuner reaches "
            f"{max(rates_of(rounds, size, 'put')) / put:.0%} and {max(rates_of(rounds, size, 'get')) / get:.0%} of that"
        )
    return ok


def rates_of(rounds: list[Round], size: int, op: str, name: str = "cloudtuner") -> list[float]:
    """Return ``name``'s MiB/s for ``op`` ("put" or "get") in each round."""
    return [rate(size, getattr(r, op)[name].seconds) for r in rounds]


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
