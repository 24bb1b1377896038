"""Streamed archives: the zip handed to a sink (and to an async consumer) as it is packed."""

from __future__ import annotations

import asyncio
import io
import os
import threading
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path

import pytest

from cloudtuner.packaging import PackageScan, archive, build_archive, errors, scan_datasets, stream_archive
from cloudtuner.packaging.stream import Sink
from cloudtuner.services.uploads import archive_chunks
from tests.integration.packaging.helpers import local_dataset, make_files, run_with_deadline


def _dataset(tmp_path: Path) -> tuple[Path, dict[str, bytes | str]]:
    files: dict[str, bytes | str] = {f"img_{index:03d}.jpg": os.urandom(index * 331) for index in range(60)}
    files |= {f"img_{index:03d}.txt": f"caption {index} " * index for index in range(60)}
    files["large.png"] = os.urandom(3 * archive.STREAM_BUFFER_BYTES + 777)
    files["zz_last.jpg"] = os.urandom(5000)
    return make_files(tmp_path / "streamed", files), files


def _collect(received: bytearray) -> Sink:
    def collect(views: Sequence[memoryview]) -> None:
        for view in views:
            received.extend(view)

    return collect


def _archive_threads() -> set[threading.Thread]:
    return {thread for thread in threading.enumerate() if thread.name.startswith("cloudtuner-archive")}


def _wait_for_no_archive_threads(before: set[threading.Thread], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while _archive_threads() - before:
        assert time.monotonic() < deadline, "the packing threads did not stop"
        time.sleep(0.01)


def test_the_streamed_bytes_are_the_built_archive(tmp_path: Path) -> None:
    folder, files = _dataset(tmp_path)
    scan = scan_datasets([local_dataset("ds", folder)])
    received = bytearray()
    streamed = run_with_deadline(lambda: stream_archive(scan, _collect(received)))
    built = build_archive(scan, tmp_path / "built.zip")
    assert bytes(received) == built.path.read_bytes()
    assert (streamed.size_bytes, streamed.file_count, streamed.source_bytes) == (
        built.size_bytes,
        built.file_count,
        built.source_bytes,
    )
    assert streamed.fingerprint == scan.fingerprint
    with zipfile.ZipFile(io.BytesIO(bytes(received))) as opened:
        assert opened.testzip() is None
        assert opened.read("datasets/ds/large.png") == files["large.png"]


def test_a_change_found_part_way_is_raised_after_the_bytes_before_it(tmp_path: Path) -> None:
    folder, _ = _dataset(tmp_path)
    scan = scan_datasets([local_dataset("ds", folder)])
    (folder / "zz_last.jpg").write_bytes(b"shorter")
    received = bytearray()
    with pytest.raises(errors.DatasetChangedError, match="changed after the upload summary"):
        run_with_deadline(lambda: stream_archive(scan, _collect(received)))
    assert len(received) > 2 * archive.STREAM_BUFFER_BYTES  # the files before the change went out
    with pytest.raises(zipfile.BadZipFile):
        zipfile.ZipFile(io.BytesIO(bytes(received)))


async def _read_all(scan: PackageScan) -> bytes:
    received = bytearray()
    async for chunk in archive_chunks(scan):
        received.extend(chunk)
    return bytes(received)


async def test_an_async_consumer_gets_the_whole_archive(tmp_path: Path) -> None:
    folder, _ = _dataset(tmp_path)
    scan = scan_datasets([local_dataset("ds", folder)])
    before = _archive_threads()
    received = await asyncio.wait_for(_read_all(scan), 20)
    assert received == build_archive(scan, tmp_path / "built.zip").path.read_bytes()
    await asyncio.to_thread(_wait_for_no_archive_threads, before)


async def test_a_consumer_that_stops_early_stops_the_packing(tmp_path: Path) -> None:
    folder, _ = _dataset(tmp_path)
    scan = scan_datasets([local_dataset("ds", folder)])
    before = _archive_threads()
    chunks = archive_chunks(scan)
    first = await asyncio.wait_for(anext(chunks), 20)
    assert bytes(first[:4]) == b"PK\x03\x04"
    packing = {thread.name for thread in _archive_threads() - before}
    assert packing == {"cloudtuner-archive-stream"}, "a thread of its own, not the loop's executor"
    await chunks.aclose()
    await asyncio.to_thread(_wait_for_no_archive_threads, before)


async def test_a_change_found_part_way_ends_the_async_stream_with_the_error(tmp_path: Path) -> None:
    folder, _ = _dataset(tmp_path)
    scan = scan_datasets([local_dataset("ds", folder)])
    (folder / "zz_last.jpg").unlink()
    received = bytearray()

    async def read() -> None:
        async for chunk in archive_chunks(scan):
            received.extend(chunk)

    with pytest.raises(errors.DatasetChangedError, match="changed after the upload summary"):
        await asyncio.wait_for(read(), 20)
    assert len(received) > 2 * archive.STREAM_BUFFER_BYTES  # the files before the change went out


@pytest.mark.skipif(archive._RWF_NOWAIT is None, reason="reads that must not wait need Linux")
def test_cached_pages_are_told_apart_from_evicted_ones(tmp_path: Path) -> None:
    path = tmp_path / "cached.jpg"
    path.write_bytes(os.urandom(64 * 1024))  # just written: in the page cache
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)  # written back is not enough
        os.fsync(descriptor)
        os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
        still_cached = archive._is_cached(descriptor, 64 * 1024 - 1)
        os.read(descriptor, 64 * 1024)
        assert archive._is_cached(descriptor, 64 * 1024 - 1)
        assert not archive._is_cached(descriptor, 64 * 1024)  # past the end: nothing to read
    finally:
        os.close(descriptor)
    if still_cached:
        pytest.skip("this file system kept the pages; the eviction half could not be checked")
