"""Benchmark: packaging throughput against plain reading, and the packaging's peak memory.

Creates a dataset of incompressible image-like files (random bytes named ``.jpg``/``.png``,
each with a caption ``.txt``) in a temporary folder, then measures, each ``--repeat`` times:

* reading: ``cat`` over every file into /dev/null, in a subprocess;
* a write floor, for reference: ``cat`` over every file into one file (the I/O an archive
  needs, with no checksums or hashing);
* packaging: ``scan_datasets`` + ``build_archive`` (zip + CRC-32 + sha256 + fsync) in a child
  process, whose peak RSS is read with ``wait4``.

All files are read once before measuring, so every run reads from the page cache alike
(``--cold`` evicts the dataset from the page cache before each run instead). Prints the best
run of each, the ratio packaging/reading (target: >= 80 %) and the peak RSS (target: < 100 MB,
independent of the dataset size). Everything created is removed at the end.

    .venv/bin/python bench/packaging_throughput.py                 # 2 GiB
    .venv/bin/python bench/packaging_throughput.py --size-mb 256   # quick run
"""

from __future__ import annotations

import argparse
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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

MIB = 1024 * 1024
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
    archive_bytes: int
    sha256: str
    peak_rss_bytes: int
    rss_after_imports_bytes: int


def run_packaging_child(dataset: Path, archive: Path, *, durable: bool) -> PackagingRun:
    """Package in a child process; return its timings and its peak RSS (from wait4)."""
    command = [sys.executable, __file__, "--child", "--dataset", str(dataset), "--archive", str(archive)]
    if not durable:
        command.append("--no-fsync")
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
        archive_bytes=report["archive_bytes"],
        sha256=report["sha256"],
        peak_rss_bytes=usage.ru_maxrss * 1024,
        rss_after_imports_bytes=report["rss_after_imports_kib"] * 1024,
    )


def child_main(dataset: str, archive: str, *, durable: bool) -> None:
    """In the child: scan and build, print a JSON report on stdout."""
    from cloudtuner import packaging

    rss_after_imports_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    config = [{"id": "bench", "type": "local", "instance_data_dir": dataset, "caption_strategy": "textfile"}]
    started = time.perf_counter()
    scan = packaging.scan_datasets(config)
    scanned = time.perf_counter()
    built = packaging.build_archive(scan, archive, durable=durable)
    finished = time.perf_counter()
    json.dump(
        {
            "seconds": finished - started,
            "scan_seconds": scanned - started,
            "archive_bytes": built.size_bytes,
            "sha256": built.sha256,
            "rss_after_imports_kib": rss_after_imports_kib,
        },
        sys.stdout,
    )


def best_of(repeat: int, measure: Callable[[], float]) -> list[float]:
    return [measure() for _ in range(repeat)]


def rate(total_bytes: int, seconds: float) -> str:
    return f"{total_bytes / seconds / MIB:8.0f} MiB/s"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=2048, help="dataset size in MiB (default 2048)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each measurement (default 3)")
    parser.add_argument("--workdir", type=Path, default=None, help="where to create the temporary folder")
    parser.add_argument("--cold", action="store_true", help="evict the dataset from the page cache before runs")
    parser.add_argument("--no-fsync", action="store_true", help="build without flushing the archive to disk")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--dataset", help=argparse.SUPPRESS)
    parser.add_argument("--archive", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.child:
        child_main(options.dataset, options.archive, durable=not options.no_fsync)
        return

    workdir = Path(tempfile.mkdtemp(prefix="cloudtuner-bench-", dir=options.workdir))
    try:
        run_benchmark(workdir, options)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def run_benchmark(workdir: Path, options: argparse.Namespace) -> None:
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

    cat_files(dataset.files, None)  # warm-up: both measurements start from the same page cache

    def read_once() -> float:
        prepare()
        return cat_files(dataset.files, None)

    def write_floor_once() -> float:
        prepare()
        seconds = cat_files(dataset.files, copy_target)
        copy_target.unlink()
        return seconds

    reads = best_of(options.repeat, read_once)
    floors = best_of(options.repeat, write_floor_once)
    runs: list[PackagingRun] = []
    for _ in range(options.repeat):
        prepare()
        runs.append(run_packaging_child(dataset.folder, archive, durable=not options.no_fsync))
        archive.unlink()

    total = dataset.total_bytes
    best_read = min(reads)
    best_floor = min(floors)
    best_run = min(runs, key=lambda run: run.seconds)
    mode = "cold (evicted before each run)" if options.cold else "warm page cache"
    print(f"runs: {options.repeat} of each, {mode}; best and median shown")
    print(
        f"reading    cat > /dev/null     best {best_read:6.2f} s {rate(total, best_read)}"
        f"   median {statistics.median(reads):6.2f} s"
    )
    print(
        f"write floor cat > one file     best {best_floor:6.2f} s {rate(total, best_floor)}"
        f"   median {statistics.median(floors):6.2f} s   (reference: copy only, no checksums, no fsync)"
    )
    fsync_note = "no fsync" if options.no_fsync else "with fsync"
    print(
        f"packaging  scan + zip + sha256 best {best_run.seconds:6.2f} s {rate(total, best_run.seconds)}"
        f"   median {statistics.median(run.seconds for run in runs):6.2f} s"
        f"   (scan {best_run.scan_seconds:.2f} s, {fsync_note})"
    )
    print(f"ratio packaging / reading: {best_read / best_run.seconds:.1%} (target >= 80 %)")
    print(f"ratio packaging / write floor: {best_floor / best_run.seconds:.1%}")
    peak = max(run.peak_rss_bytes for run in runs)
    after_imports = max(run.rss_after_imports_bytes for run in runs)
    print(
        f"peak RSS of the packaging child: {peak / MIB:.1f} MiB"
        f" (of which {after_imports / MIB:.1f} MiB after imports; target < 100 MB)"
    )
    hashes = {run.sha256 for run in runs}
    print(f"archive: {best_run.archive_bytes / MIB:.1f} MiB, sha256 {best_run.sha256[:16]}…,"
          f" identical across runs: {len(hashes) == 1}")  # fmt: skip


if __name__ == "__main__":
    main()
