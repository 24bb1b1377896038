"""Stream a job's local datasets into one deterministic zip archive, and hash it.

Layout: ``datasets/<name>/<path inside the dataset>`` (see ``layout.py``). Images and other
already-compressed files are STORED, text and uncompressed formats are DEFLATED
(``rules.compression_for_name``).

Deterministic: files come in walk order (sorted, depth-first), every entry has the same
timestamp (1980-01-01 00:00), mode (0644), and creator system (Unix), and the archive is written
as one forward-only stream (Python's ``zipfile`` on a non-seekable sink, which puts CRC and sizes
in a data descriptor after each file). The same files therefore give a byte-identical archive
with the same zlib version, whatever their modification times or the machine's clock.

Content hash: the sha256 of the archive bytes, computed while they are written, on a second
thread so that hashing overlaps reading and writing. ``hash_package`` computes the same hash
without writing anything to disk (it still reads every file). The cheap, contents-free check is
the scan's fingerprint (``scan.py``).

Speed: while one file is written, the kernel is asked to read ahead the start of the next
(``posix_fadvise``), so reading from disk overlaps compressing, checksumming and writing.

Memory: files are read in 1 MiB chunks and at most a few chunks wait for the hashing thread,
so memory does not grow with file sizes. Like any zip writer, ``zipfile`` keeps one small
record per file for the central directory (a few hundred bytes each).

Atomic: the archive is written to a hidden temporary file next to the destination, flushed to
disk, and renamed into place; on any failure the temporary file is removed and the
destination is left as it was.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import queue
import stat
import tempfile
import threading
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from cloudtuner.packaging import errors, layout, rules, walk
from cloudtuner.packaging.scan import FolderFingerprint, FolderScan, PackageScan, dataset_label

ProgressCallback = Callable[[int, int], None]
"""Called with (bytes of dataset files done, bytes in total)."""

FIXED_DATE_TIME = (1980, 1, 1, 0, 0, 0)
"""Timestamp of every archive entry (the earliest a zip can hold)."""

READ_CHUNK_BYTES = 1 << 20
"""Files are read and written in chunks of this size."""

PREFETCH_BYTES = 8 << 20
"""How much of the next file the kernel is asked to read ahead while the current one is written."""

PROGRESS_STEP_BYTES = 4 << 20
"""The progress callback is called at most once per this many bytes (and at start and end)."""

_ENTRY_MODE = 0o100644
_CREATED_ON_UNIX = 3
_HASH_QUEUE_CHUNKS = 8
_SMALL_WRITE_BYTES = 64 * 1024
# O_NOFOLLOW: a file swapped for a link since the walk is refused; O_NONBLOCK: one swapped for a
# named pipe does not block the open (the fstat check then refuses it).
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)


@dataclass(frozen=True, slots=True)
class BuiltArchive:
    """An archive written to disk."""

    path: Path
    sha256: str
    """Content hash: sha256 of the archive bytes, 64 hex digits."""
    size_bytes: int
    file_count: int
    source_bytes: int
    """Sum of the sizes of the packaged files."""
    fingerprint: str
    """The scan fingerprint the archive was checked against."""


def build_archive(
    scan: PackageScan,
    destination: str | os.PathLike[str],
    *,
    progress: ProgressCallback | None = None,
    durable: bool = True,
) -> BuiltArchive:
    """Write the scanned datasets to ``destination`` as one zip archive and return its hash.

    The folders are walked again and must still hold what the scan found (same names, sizes
    and modification times). ``durable`` flushes the archive to disk before the rename, so that a
    crash never leaves a truncated archive under the final name. An existing file at
    ``destination`` is replaced.

    Raises:
        NothingToPackageError: the scan has no folders to package.
        InvalidArchivePathError: the destination's folder is missing or lies inside a dataset.
        DatasetChangedError: a dataset changed since the scan.
        DatasetNotFoundError, DatasetNotADirectoryError, DatasetUnreadableError: a dataset
            folder or file can no longer be read.
        ArchiveWriteError: the archive could not be written (disk full, permissions, ...).
    """
    if not scan.folders:
        raise errors.NothingToPackageError()
    target = Path(os.path.abspath(destination))
    _check_destination(target, scan)
    try:
        handle, temporary_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    except OSError as exc:
        raise errors.ArchiveWriteError(
            f"The archive cannot be created in {target.parent}: {exc.strerror or exc}."
        ) from exc
    hasher = _BackgroundSha256()
    try:
        with os.fdopen(handle, "wb") as archive_file:
            sink = _ArchiveSink(archive_file, hasher)
            file_count, source_bytes = _write_package(scan, sink, progress)
            sink.flush()
            if durable:
                _sync(lambda: os.fsync(archive_file.fileno()), target)
        digest = hasher.finish()
        _sync(lambda: os.replace(temporary_name, target), target)
        if durable:
            _fsync_folder(target.parent)
    except BaseException:
        hasher.close()
        with contextlib.suppress(OSError):
            os.unlink(temporary_name)
        raise
    return BuiltArchive(
        path=target,
        sha256=digest,
        size_bytes=sink.tell(),
        file_count=file_count,
        source_bytes=source_bytes,
        fingerprint=scan.fingerprint,
    )


def hash_package(scan: PackageScan, *, progress: ProgressCallback | None = None) -> str:
    """Return the sha256 the archive of this scan would have, without writing it anywhere.

    Every file is read (and captions compressed), so this costs about as much as building
    minus the disk writes; prefer comparing ``scan.fingerprint`` first when looking for an
    unchanged package.

    Raises:
        NothingToPackageError, DatasetChangedError, DatasetNotFoundError,
        DatasetNotADirectoryError, DatasetUnreadableError: as ``build_archive``.
    """
    if not scan.folders:
        raise errors.NothingToPackageError()
    hasher = _BackgroundSha256()
    try:
        _write_package(scan, _ArchiveSink(None, hasher), progress)
        return hasher.finish()
    finally:
        hasher.close()


def _check_destination(target: Path, scan: PackageScan) -> None:
    if not target.parent.is_dir():
        raise errors.InvalidArchivePathError(f"The folder for the archive does not exist: {target.parent}.")
    real_parent = os.path.realpath(target.parent)
    for folder in scan.folders:
        real_source = os.path.realpath(folder.folder.source_dir)
        if real_parent == real_source or real_parent.startswith(real_source.rstrip(os.sep) + os.sep):
            raise errors.InvalidArchivePathError(
                f"The archive {target} would be written inside the folder of"
                f" {dataset_label(folder.folder)} ({folder.folder.source_dir}); write it elsewhere."
            )


def _write_package(scan: PackageScan, sink: _ArchiveSink, progress: ProgressCallback | None) -> tuple[int, int]:
    """Write every folder of the scan through ``sink``; return (file count, source bytes)."""
    reporter = _ProgressReporter(progress, scan.total_bytes)
    file_count = 0
    source_bytes = 0
    archive = zipfile.ZipFile(sink, mode="w", allowZip64=True)
    try:
        for folder_scan in scan.folders:
            count, size = _write_folder(archive, folder_scan, reporter)
            file_count += count
            source_bytes += size
    except BaseException:
        # Stop all output, then let zipfile finish its bookkeeping into the void, so that
        # nothing is written (or hashed) later, e.g. when the ZipFile is garbage-collected.
        sink.abandon()
        with contextlib.suppress(Exception):
            archive.close()
        raise
    archive.close()
    reporter.finish()
    return file_count, source_bytes


def _write_folder(archive: zipfile.ZipFile, folder_scan: FolderScan, reporter: _ProgressReporter) -> tuple[int, int]:
    folder = folder_scan.folder
    label = dataset_label(folder)
    fingerprint = FolderFingerprint(folder.archive_folder)
    file_count = 0
    source_bytes = 0
    walked = (
        item for item in walk.walk_dataset(folder.source_dir, dataset_label=label) if isinstance(item, walk.WalkedFile)
    )
    upcoming = next(walked, None)
    while upcoming is not None:
        item, upcoming = upcoming, next(walked, None)
        if upcoming is not None:
            _prefetch(upcoming)
        file_count += 1
        if file_count > folder_scan.file_count:
            raise _folder_changed(folder_scan)
        name = layout.member_name(folder.archive_folder, item.relative_parts)
        fingerprint.add(name, item.size_bytes, item.mtime_ns)
        _write_member(archive, name, item, label=label, reporter=reporter)
        source_bytes += item.size_bytes
    if fingerprint.hexdigest() != folder_scan.fingerprint:
        raise _folder_changed(folder_scan)
    return file_count, source_bytes


def _folder_changed(folder_scan: FolderScan) -> errors.DatasetChangedError:
    folder = folder_scan.folder
    return errors.DatasetChangedError(
        f"The files of {dataset_label(folder)} ({folder.source_dir}) changed after the upload summary"
        " was made (files were added, removed or modified). Review the upload summary again."
    )


def _file_changed(shown: str) -> errors.DatasetChangedError:
    return errors.DatasetChangedError(
        f"{shown} changed after the upload summary was made. Review the upload summary again."
    )


def _prefetch(item: walk.WalkedFile) -> None:
    """Ask the kernel to start reading the next file while this one is written (cold caches)."""
    with contextlib.suppress(AttributeError, OSError):
        descriptor = os.open(item.open_path, _OPEN_FLAGS)
        try:
            length = min(item.size_bytes, PREFETCH_BYTES)
            os.posix_fadvise(descriptor, 0, length, os.POSIX_FADV_WILLNEED)
        finally:
            os.close(descriptor)


def _write_member(
    archive: zipfile.ZipFile, name: str, item: walk.WalkedFile, *, label: str, reporter: _ProgressReporter
) -> None:
    shown = f"{rules.printable_path(item.relative_parts)} in {label}"
    entry = zipfile.ZipInfo(name, date_time=FIXED_DATE_TIME)
    entry.create_system = _CREATED_ON_UNIX
    entry.external_attr = _ENTRY_MODE << 16
    entry.compress_type = rules.compression_for_name(item.relative_parts[-1])
    entry.file_size = item.size_bytes
    descriptor = _open_source(item.open_path, shown=shown)
    try:
        opened = os.fstat(descriptor)
        if not stat.S_ISREG(opened.st_mode) or opened.st_size != item.size_bytes:
            raise _file_changed(shown)
        with contextlib.suppress(AttributeError, OSError):
            os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_SEQUENTIAL)
        member = archive.open(entry, mode="w")
        try:
            done = 0
            while chunk := _read_chunk(descriptor, shown=shown):
                done += len(chunk)
                if done > item.size_bytes:
                    raise _file_changed(shown)
                member.write(chunk)
                reporter.advance(len(chunk))
            if done != item.size_bytes:
                raise _file_changed(shown)
        except BaseException:
            with contextlib.suppress(Exception):
                member.close()  # releases the ZipFile's write lock; the archive is discarded anyway
            raise
        member.close()
    finally:
        os.close(descriptor)


def _open_source(path: str, *, shown: str) -> int:
    try:
        return os.open(path, _OPEN_FLAGS)
    except FileNotFoundError as exc:
        raise errors.DatasetChangedError(
            f"{shown} was removed after the upload summary was made. Review the upload summary again."
        ) from exc
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise errors.DatasetChangedError(
                f"{shown} was replaced by a symbolic link after the upload summary was made."
            ) from exc
        raise errors.DatasetUnreadableError(f"{shown} cannot be read: {exc.strerror or exc}.") from exc


def _read_chunk(descriptor: int, *, shown: str) -> bytes:
    try:
        return os.read(descriptor, READ_CHUNK_BYTES)
    except OSError as exc:
        raise errors.DatasetUnreadableError(f"{shown} cannot be read: {exc.strerror or exc}.") from exc


def _sync(operation: Callable[[], None], target: Path) -> None:
    try:
        operation()
    except OSError as exc:
        raise errors.ArchiveWriteError(f"The archive {target} could not be written: {exc.strerror or exc}.") from exc


def _fsync_folder(folder: Path) -> None:
    """Make the rename durable; some file systems cannot sync a folder, which is not an error."""
    with contextlib.suppress(OSError):
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


class _ArchiveSink:
    """The forward-only stream ``zipfile`` writes to: a file (or nothing) plus the hash.

    It has no ``seek``, so ``zipfile`` never rewrites earlier bytes and the hash of what
    passes through is the hash of the archive.
    """

    def __init__(self, archive_file: BinaryIO | None, hasher: _BackgroundSha256) -> None:
        self._file = archive_file
        self._hasher = hasher
        self._position = 0
        self._abandoned = False

    def abandon(self) -> None:
        """Drop every later write: the archive is being discarded."""
        self._abandoned = True

    def write(self, data: bytes, /) -> int:
        if self._abandoned:
            return len(data)
        if not isinstance(data, bytes):  # zipfile may pass a memoryview; the hasher keeps a reference
            data = bytes(data)
        if self._file is not None:
            try:
                self._file.write(data)
            except OSError as exc:
                raise errors.ArchiveWriteError(f"The archive could not be written: {exc.strerror or exc}.") from exc
        self._hasher.update(data)
        self._position += len(data)
        return len(data)

    def tell(self) -> int:
        return self._position

    def flush(self) -> None:
        if self._file is not None:
            try:
                self._file.flush()
            except OSError as exc:
                raise errors.ArchiveWriteError(f"The archive could not be written: {exc.strerror or exc}.") from exc

    def close(self) -> None:
        """Nothing to do: the owner of the file closes it."""


class _BackgroundSha256:
    """sha256 computed on a separate thread, fed in order through a bounded queue.

    Small writes (zip headers, captions) are batched so the queue carries few, large items;
    the bound keeps at most ``_HASH_QUEUE_CHUNKS`` chunks in memory.
    """

    def __init__(self) -> None:
        self._digest = hashlib.sha256()
        self._pending = bytearray()
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=_HASH_QUEUE_CHUNKS)
        self._thread = threading.Thread(target=self._consume, name="cloudtuner-archive-sha256", daemon=True)
        self._thread.start()
        self._closed = False

    def _consume(self) -> None:
        while (chunk := self._queue.get()) is not None:
            self._digest.update(chunk)

    def update(self, data: bytes) -> None:
        if len(data) < _SMALL_WRITE_BYTES:
            self._pending += data
            if len(self._pending) >= _SMALL_WRITE_BYTES:
                self._flush_pending()
            return
        self._flush_pending()
        self._queue.put(data)

    def _flush_pending(self) -> None:
        if self._pending:
            self._queue.put(bytes(self._pending))
            self._pending.clear()

    def finish(self) -> str:
        """Hash what is still pending, stop the thread and return the hex digest."""
        self._flush_pending()
        self.close()
        return self._digest.hexdigest()

    def close(self) -> None:
        """Stop the thread (after it has hashed what is queued); safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._thread.join()


class _ProgressReporter:
    def __init__(self, callback: ProgressCallback | None, total_bytes: int) -> None:
        self._callback = callback
        self._total = total_bytes
        self._done = 0
        self._reported = 0
        if callback is not None:
            callback(0, total_bytes)

    def advance(self, size_bytes: int) -> None:
        self._done += size_bytes
        if self._callback is not None and self._done - self._reported >= PROGRESS_STEP_BYTES:
            self._reported = self._done
            self._callback(self._done, self._total)

    def finish(self) -> None:
        if self._callback is not None and self._reported != self._done:
            self._reported = self._done
            self._callback(self._done, self._total)
