"""Benchmark: packaging throughput against plain reading, and the packaging's peak memory.

Creates a dataset of incompressible image-like files (random bytes named ``.jpg``/``.png``,
each with a caption ``.txt``) in a temporary folder, then runs ``--repeat`` rounds, each of:

* reading: ``cat`` over every file into /dev/null, in a subprocess;
* a write floor, for reference: ``cat`` over every file into one file on the same disk (the
  I/O an archive needs, with no checksums or hashing);
* streamed packaging (the target): ``scan_datasets`` + ``stream_archive`` (zip + CRC-32) in a
  child process, the archive's bytes written to /dev/null as they are made, like ``cat``'s: the
  path a self-hosted worker's dataset download takes, with no archive file and no sha256;
* packaging to a file, for reference: ``scan_datasets`` + ``build_archive`` (zip + CRC-32 +
  sha256) in a child process, writing the archive next to the dataset, as Replicate's dispatch
  calls it for its archives of at most 100 MiB (no fsync; ``--fsync`` measures ``durable=True``).

Each child's peak RSS and CPU time are read with ``wait4``.

The measurements of a round run back to back, so that load from other processes on a shared
machine affects them alike (after each one that writes, an untimed ``sync`` lets the disk
writes it left behind finish before the next one starts); ratios are given for the best runs and as the median of the
rounds' own ratios. All files are read once before measuring, so every run reads from the page
cache alike (``--cold`` evicts the dataset from the page cache before each run instead).

It also measures, in this process, what one core does on this machine: sha256 and CRC-32 over
a buffer in memory. Every byte of an archive file goes through sha256 (its content hash, which
Replicate compares with its own checksum of an upload), and sha256 cannot be split over cores,
so ``sha256 rate / reading rate`` bounds the ratio packaging to a file can reach here.

Prints PASS/FAIL for the streamed packaging's ratio (target: >= 80 %) and the peak RSS of both
(target: < 100 MB, independent of the dataset size), and the load average. Everything created
is removed at the end.

    .venv/bin/python bench/packaging_throughput.py                 # 2 GiB
    .venv/bin/python bench/packaging_throughput.py --size-mb 256   # quick run
    .venv/bin/python bench/packaging_throughput.py --cold          # reads from disk
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from _harness import load_average, verdict

MIB = 1024 * 1024
TARGET_RATIO = 0.80
TARGET_PEAK_RSS_BYTES = 100 * 1000 * 1000
_CAT_BATCH = 400
_FOLDERS = 4
_WORDS = ("a", "photo", "of", "sks", "cat", "dog", "sitting", "on", "red", "chair", "outdoors", "studio")


@dataclass(frozen=True)
class Dataset:
    folder: Path
    files: list[str]
    total_bytes: int
    image_count: int


def create_dataset(folder: Path, size_bytes: int, *, seed: int) -> Dataset:
    """Write random image-like files (0.5-3.5 MiB) with captions until ``size_bytes`` is reached."""
    rng = random.Random(seed)
    files: list[str] = []
    total = 0
    index = 0
    while total < size_bytes:
        subfolder = folder / f"part-{index % _FOLDERS}"
        subfolder.mkdir(parents=True, exist_ok=True)
        image_size = min(rng.randint(MIB // 2, 7 * MIB // 2), max(size_bytes - total, 1))
        image = subfolder / f"image_{index:06d}.{'jpg' if index % 2 == 0 else 'png'}"
        with image.open("wb") as handle:
            remaining = image_size
            while remaining:
                chunk = min(remaining, 4 * MIB)
                handle.write(os.urandom(chunk))
                remaining -= chunk
        caption = subfolder / f"image_{index:06d}.txt"
        caption.write_text(" ".join(rng.choice(_WORDS) for _ in range(rng.randint(8, 40))))
        files += [str(image), str(caption)]
        total += image_size + caption.stat().st_size
        index += 1
    os.sync()
    return Dataset(folder=folder, files=files, total_bytes=total, image_count=index)


def cat_files(files: Sequence[str], output: Path | None) -> float:
    """Run ``cat`` over the files (in batches) into /dev/null or ``output``; return seconds."""
    started = time.perf_counter()
    with open(output if output is not None else os.devnull, "wb") as sink:
        for start in range(0, len(files), _CAT_BATCH):
            subprocess.run(["cat", *files[start : start + _CAT_BATCH]], stdout=sink, check=True)
    return time.perf_counter() - started


def evict_from_page_cache(files: Sequence[str]) -> None:
    """Drop the files' pages from the page cache (only these files; no root needed)."""
    for path in files:
        descriptor = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(descriptor)


@dataclass(frozen=True)
class PackagingRun:
    seconds: float
    scan_seconds: float
    cpu_seconds: float
    archive_bytes: int
    sha256: str
    crc32_implementation: str
    peak_rss_bytes: int
    rss_after_imports_bytes: int


def run_packaging_child(dataset: Path, archive: Path | None, *, durable: bool) -> PackagingRun:
    """Package in a child process (``archive`` None: streamed to /dev/null); return its timings,
    CPU time and peak RSS (from wait4)."""
    command = [sys.executable, __file__, "--child", "--dataset", str(dataset)]
    if archive is not None:
        command += ["--archive", str(archive)]
    if durable:
        command.append("--fsync")
    child = subprocess.Popen(command, stdout=subprocess.PIPE)
    assert child.stdout is not None
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"packaging child failed with exit code {child.returncode}")
    report = json.loads(output)  # the child times scan + build only, not start-up and imports
    return PackagingRun(
        seconds=report["seconds"],
        scan_seconds=report["scan_seconds"],
        cpu_seconds=report["cpu_seconds"],
        archive_bytes=report["archive_bytes"],
        sha256=report["sha256"],
        crc32_implementation=report["crc32"],
        peak_rss_bytes=usage.ru_maxrss * 1024,
        rss_after_imports_bytes=report["rss_after_imports_kib"] * 1024,
    )


def child_main(dataset: str, archive: str | None, *, durable: bool) -> None:
    """In the child: scan and build (``archive`` None: stream to /dev/null), print a JSON report."""
    from cloudtuner import packaging
    from cloudtuner.core import crc32 as crc32_module

    rss_after_imports_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    config = [{"id": "bench", "type": "local", "instance_data_dir": dataset, "caption_strategy": "textfile"}]
    null = os.open(os.devnull, os.O_WRONLY)

    def to_dev_null(views: Sequence[memoryview]) -> None:
        os.writev(null, views)

    cpu_before = os.times()
    started = time.perf_counter()
    scan = packaging.scan_datasets(config)
    scanned = time.perf_counter()
    if archive is None:
        streamed = packaging.stream_archive(scan, to_dev_null)
        size_bytes, sha256 = streamed.size_bytes, ""
    else:
        built = packaging.build_archive(scan, archive, durable=durable)
        size_bytes, sha256 = built.size_bytes, built.sha256
    finished = time.perf_counter()
    cpu_after = os.times()
    crc = crc32_module.crc32
    json.dump(
        {
            "seconds": finished - started,
            "scan_seconds": scanned - started,
            "cpu_seconds": (cpu_after.user - cpu_before.user) + (cpu_after.system - cpu_before.system),
            "archive_bytes": size_bytes,
            "sha256": sha256,
            "crc32": f"{getattr(crc, '__module__', None) or 'zlib'}.crc32",
            "rss_after_imports_kib": rss_after_imports_kib,
        },
        sys.stdout,
    )


def one_core_rates(repeat: int) -> tuple[float, float]:
    """Return the best sha256 and CRC-32 rates (bytes/s) of one core over a buffer in memory."""
    from cloudtuner.core import crc32 as crc32_module

    buffer = memoryview(os.urandom(MIB))
    rounds = 128

    def sha256_once() -> float:
        digest = hashlib.sha256()
        started = time.perf_counter()
        for _ in range(rounds):
            digest.update(buffer)
        return time.perf_counter() - started

    def crc32_once() -> float:
        value = 0
        started = time.perf_counter()
        for _ in range(rounds):
            value = crc32_module.crc32(buffer, value)
        return time.perf_counter() - started

    sha256_seconds = min(sha256_once() for _ in range(repeat))
    crc32_seconds = min(crc32_once() for _ in range(repeat))
    return rounds * MIB / sha256_seconds, rounds * MIB / crc32_seconds


def rate(total_bytes: int, seconds: float) -> str:
    return f"{total_bytes / seconds / MIB:8.0f} MiB/s"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=2048, help="dataset size in MiB (default 2048)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of measurements (default 3)")
    parser.add_argument("--workdir", type=Path, default=None, help="where to create the temporary folder")
    parser.add_argument("--cold", action="store_true", help="evict the dataset from the page cache before runs")
    parser.add_argument("--fsync", action="store_true", help="build with durable=True (flush the archive to disk)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--dataset", help=argparse.SUPPRESS)
    parser.add_argument("--archive", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.child:
        child_main(options.dataset, options.archive, durable=options.fsync)
        return

    workdir = Path(tempfile.mkdtemp(prefix="cloudtuner-bench-", dir=options.workdir))
    try:
        run_benchmark(workdir, options)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@dataclass
class Round:
    read: float
    floor: float
    streamed: PackagingRun
    packaging: PackagingRun


def run_benchmark(workdir: Path, options: argparse.Namespace) -> None:
    print(f"load average at start: {load_average()}")
    started = time.perf_counter()
    dataset = create_dataset(workdir / "dataset", options.size_mb * MIB, seed=options.seed)
    print(
        f"dataset: {dataset.total_bytes / MIB:.1f} MiB, {dataset.image_count} images + {dataset.image_count}"
        f" captions in {_FOLDERS} folders (created in {time.perf_counter() - started:.1f} s)"
    )
    archive = workdir / "out" / "job.zip"
    archive.parent.mkdir()
    copy_target = workdir / "out" / "copy.bin"

    def prepare() -> None:
        if options.cold:
            evict_from_page_cache(dataset.files)

    cat_files(dataset.files, None)  # warm-up: every measurement starts from the same page cache

    def write_floor_once() -> float:
        seconds = cat_files(dataset.files, copy_target)
        copy_target.unlink()
        os.sync()  # untimed: the copy's write-back must not run during the next measurement
        return seconds

    rounds: list[Round] = []
    for _ in range(options.repeat):
        prepare()
        read = cat_files(dataset.files, None)
        prepare()
        floor = write_floor_once()
        prepare()
        streamed = run_packaging_child(dataset.folder, None, durable=False)
        prepare()
        packaging = run_packaging_child(dataset.folder, archive, durable=options.fsync)
        archive.unlink()
        os.sync()
        rounds.append(Round(read=read, floor=floor, streamed=streamed, packaging=packaging))
    sha256_rate, crc32_rate = one_core_rates(options.repeat)
    report(dataset, rounds, options, sha256_rate=sha256_rate, crc32_rate=crc32_rate)


def report(
    dataset: Dataset, rounds: list[Round], options: argparse.Namespace, *, sha256_rate: float, crc32_rate: float
) -> None:
    total = dataset.total_bytes
    reads = [one.read for one in rounds]
    floors = [one.floor for one in rounds]
    runs = [one.packaging for one in rounds]
    best_read = min(reads)
    best_floor = min(floors)
    best_run = min(runs, key=lambda run: run.seconds)
    mode = "cold (evicted before each run)" if options.cold else "warm page cache"
    print(f"rounds: {options.repeat}, {mode}; best and median shown")
    print(
        f"reading    cat > /dev/null     best {best_read:6.2f} s {rate(total, best_read)}"
        f"   median {statistics.median(reads):6.2f} s"
    )
    print(
        f"write floor cat > one file     best {best_floor:6.2f} s {rate(total, best_floor)}"
        f"   median {statistics.median(floors):6.2f} s   (reference: copy only, no checksums, no fsync)"
    )
    streams = [one.streamed for one in rounds]
    best_stream = min(streams, key=lambda run: run.seconds)
    stream_cpu = statistics.median(run.cpu_seconds for run in streams)
    print(
        f"streamed   scan + zip > null   best {best_stream.seconds:6.2f} s {rate(total, best_stream.seconds)}"
        f"   median {statistics.median(run.seconds for run in streams):6.2f} s"
        f"   (scan {best_stream.scan_seconds:.2f} s; CPU {stream_cpu:.2f} s,"
        f" {stream_cpu / (total / 2**30):.2f} s per GiB; {best_stream.crc32_implementation})"
    )
    fsync_note = "with fsync" if options.fsync else "no fsync"
    cpu = statistics.median(run.cpu_seconds for run in runs)
    print(
        f"to a file  scan + zip + sha256 best {best_run.seconds:6.2f} s {rate(total, best_run.seconds)}"
        f"   median {statistics.median(run.seconds for run in runs):6.2f} s"
        f"   (scan {best_run.scan_seconds:.2f} s, {fsync_note}; CPU {cpu:.2f} s,"
        f" {cpu / (total / 2**30):.2f} s per GiB)"
    )
    ratio = best_read / best_stream.seconds
    paired = statistics.median(one.read / one.streamed.seconds for one in rounds)
    each = ", ".join(f"{one.read:.2f}/{one.streamed.seconds:.2f} s" for one in rounds)
    print(f"each round, reading / streamed: {each}")
    print(
        f"ratio streamed packaging / reading: {ratio:.1%} (median of the rounds' ratios {paired:.1%}; target >= 80 %)"
    )
    file_ratio = best_read / best_run.seconds
    file_paired = statistics.median(one.read / one.packaging.seconds for one in rounds)
    print(
        f"ratio packaging to a file / reading: {file_ratio:.1%} (median {file_paired:.1%});"
        f" / write floor: {best_floor / best_run.seconds:.1%}"
    )
    read_rate = total / best_read
    print(
        f"one core here: sha256 {sha256_rate / MIB:.0f} MiB/s, CRC-32 {crc32_rate / MIB:.0f} MiB/s;"
        f" sha256 alone allows at most {sha256_rate / read_rate:.0%} of this reading rate"
    )
    peak = max(run.peak_rss_bytes for run in runs + streams)
    after_imports = max(run.rss_after_imports_bytes for run in runs + streams)
    print(
        f"peak RSS of the packaging children: streamed {max(r.peak_rss_bytes for r in streams) / MIB:.1f} MiB,"
        f" to a file {max(r.peak_rss_bytes for r in runs) / MIB:.1f} MiB"
        f" (at most {after_imports / MIB:.1f} MiB after imports; target < 100 MB)"
    )
    hashes = {run.sha256 for run in runs}
    sizes = {run.archive_bytes for run in runs + streams}
    print(f"archive: {best_run.archive_bytes / MIB:.1f} MiB, sha256 {best_run.sha256[:16]}…,"
          f" identical across runs: {len(hashes) == 1}; streamed and file sizes equal: {len(sizes) == 1}")  # fmt: skip
    print(f"load average at end: {load_average()}")
    print(f"{verdict(ratio >= TARGET_RATIO)}: streamed packaging at {ratio:.1%} of reading ({mode}; target >= 80 %)")
    print(f"{verdict(peak < TARGET_PEAK_RSS_BYTES)}: peak RSS {peak / 1e6:.1f} MB (target < 100 MB)")


if __name__ == "__main__":
    main()
