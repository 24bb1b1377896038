"""Stream a job's local datasets into one deterministic zip archive, and hash it.

Layout: ``datasets/<name>/<path inside the dataset>`` (see ``layout.py``). Images and other
already-compressed files are STORED, text and uncompressed formats are DEFLATED
(``rules.compression_for_name``).

Deterministic: files come in walk order (sorted, depth-first), and every entry has the same
timestamp, mode and creator system; the records are defined in ``zipformat.py`` (a forward-only
stream with a data descriptor after each file, as Python's ``zipfile`` writes to a pipe). The
same files therefore give a byte-identical archive, on any machine and clock and whatever the
files' modification times; only the bytes of deflated (text) members depend on the zlib version.

Content hash: the sha256 of the archive bytes. Providers compare it with the checksum of a
file they already hold (Replicate reports the sha256 of each upload), so it has to be exactly
that. It is computed while the archive is written, on its own thread (``stream.py``).
``hash_package`` computes the same hash without writing anything (it still reads every file).
The cheap, contents-free check is the scan's fingerprint (``scan.py``).

Streamed: ``stream_archive`` hands the same bytes to a sink as they are made (a download, say)
instead of writing a file, and skips the sha256 (a receiver checks the members' CRC-32s). Then
packaging is one read of every file plus CRC-32, as fast as reading the files.

Speed: file contents are read straight into the stream's reusable buffers, checksummed (CRC-32)
on the calling thread, then written (with direct I/O where possible) and hashed on two other
threads; the kernel is asked to read ahead the files that come next (``posix_fadvise``), so
reading from disk overlaps the rest. sha256 cannot be split over threads, so one core hashing
the archive bounds the speed (``docs/dev/packaging-and-storage.md`` has the figures).

Memory: fixed by the stream's buffers (``STREAM_BUFFERS`` of ``STREAM_BUFFER_BYTES``) and one
read buffer for compressed members, whatever the file sizes. Like any zip writer, it keeps
one small record per file for the central directory (a few hundred bytes each).

Atomic: the archive is written to a hidden temporary file next to the destination and renamed
into place; on any failure the temporary file is removed and the destination is left as it
was. ``durable=True`` also flushes it to disk before the rename (without direct I/O, the kernel
is asked to start writing it out every ``WRITE_BACK_BYTES`` along the way, so the final
``fsync`` is short).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from cloudtuner.core.crc32 import crc32
from cloudtuner.packaging import errors, layout, rules, walk, zipformat
from cloudtuner.packaging.scan import FolderFingerprint, FolderScan, PackageScan, dataset_label
from cloudtuner.packaging.stream import ArchiveStream, Sink

ProgressCallback = Callable[[int, int], None]
"""Called with (bytes of dataset files done, bytes in total)."""

FIXED_DATE_TIME = (1980, 1, 1, 0, 0, 0)
"""Timestamp of every archive entry (the earliest a zip can hold)."""

READ_CHUNK_BYTES = 1 << 20
"""Files are read in chunks of at most this size."""

STREAM_BUFFER_BYTES = 1 << 20
"""Size of each of the stream's buffers (zip records and stored file contents)."""

STREAM_BUFFERS = 8
"""How many stream buffers exist: at most this many wait for the writer and hashing threads."""

SINK_STREAM_BUFFERS = 2
"""How many stream buffers a streamed archive uses: with a sink that keeps up, two buffers stay
in the processor's cache, which makes packing markedly faster than rotating through eight."""

PREFETCH_BYTES = 32 << 20
"""How far ahead of the file being packed the kernel is asked to read the next files."""

PREFETCH_FILES = 64
"""At most this many files are looked up ahead of the one being packed."""

DIRECT_IO = True
"""Write archives with direct I/O where the file system allows it (see ``stream.py``)."""

WRITE_BACK_BYTES = 16 << 20
"""With ``durable``, the kernel is asked to start writing the archive to disk every this many bytes."""

PROGRESS_STEP_BYTES = 4 << 20
"""The progress callback is called at most once per this many bytes (and at start and end)."""

_RWF_NOWAIT: int | None = getattr(os, "RWF_NOWAIT", None)

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
    durable: bool = False,
) -> BuiltArchive:
    """Write the scanned datasets to ``destination`` as one zip archive and return its hash.

    The folders are walked again and must still hold what the scan found (same names, sizes
    and modification times). The archive appears under ``destination`` only once it is
    complete (an atomic rename), and an existing file there is replaced; a failure leaves no
    temporary file behind. Readers on this machine see the complete archive at once.

    ``durable=True`` also waits until the archive and the rename are on disk, so that not even
    an operating-system crash or power loss can leave a truncated archive under the final name.
    An archive that is uploaded and deleted by the same process, and rebuilt after any crash
    (the dispatch path does exactly that), does not need it: without it, building a 2 GiB
    archive does not wait for 2 GiB of disk writes.

    ``progress`` is called on the calling thread.

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
        descriptor, temporary_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    except OSError as exc:
        raise errors.ArchiveWriteError(
            f"The archive cannot be created in {target.parent}: {exc.strerror or exc}."
        ) from exc
    try:
        try:
            write_back = WRITE_BACK_BYTES if durable else None
            digest, size_bytes, file_count, source_bytes = _pack(scan, descriptor, progress, write_back)
            if durable:
                _sync(lambda: os.fsync(descriptor), target)
        finally:
            os.close(descriptor)
        _sync(lambda: os.replace(temporary_name, target), target)
        if durable:
            _fsync_folder(target.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary_name)
        raise
    assert digest is not None  # a hashing stream
    return BuiltArchive(
        path=target,
        sha256=digest,
        size_bytes=size_bytes,
        file_count=file_count,
        source_bytes=source_bytes,
        fingerprint=scan.fingerprint,
    )


@dataclass(frozen=True, slots=True)
class StreamedArchive:
    """An archive handed to a sink."""

    size_bytes: int
    file_count: int
    source_bytes: int
    """Sum of the sizes of the packaged files."""
    fingerprint: str
    """The scan fingerprint the archive was checked against."""


def stream_archive(scan: PackageScan, sink: Sink, *, progress: ProgressCallback | None = None) -> StreamedArchive:
    """Hand the archive of ``scan`` to ``sink``, in order, as it is made; no file, no sha256.

    The bytes are exactly those ``build_archive`` writes. ``sink`` is called on the calling
    thread with one buffer at a time, each valid only until it returns. The folders must
    still hold what the scan found; if they do not, the error is raised after part of the
    archive may already have gone to the sink, so a receiver must treat an archive that does not
    end as failed (a zip without its end records is unreadable anyway). Memory is fixed, as for
    ``build_archive``; ``progress`` is called on the calling thread.

    Raises:
        NothingToPackageError, DatasetChangedError, DatasetNotFoundError,
        DatasetNotADirectoryError, DatasetUnreadableError: as ``build_archive``.
        ArchiveWriteError: the sink raised an ``OSError``; anything else it raised, as is.
    """
    if not scan.folders:
        raise errors.NothingToPackageError()
    _, size_bytes, file_count, source_bytes = _pack(scan, None, progress, None, sink=sink, hash_content=False)
    return StreamedArchive(
        size_bytes=size_bytes, file_count=file_count, source_bytes=source_bytes, fingerprint=scan.fingerprint
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
    digest = _pack(scan, None, progress, None)[0]
    assert digest is not None  # a hashing stream
    return digest


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


def _pack(
    scan: PackageScan,
    descriptor: int | None,
    progress: ProgressCallback | None,
    write_back_bytes: int | None,
    *,
    sink: Sink | None = None,
    hash_content: bool = True,
) -> tuple[str | None, int, int, int]:
    """Stream the archive of ``scan`` into ``descriptor`` and/or ``sink`` (neither: hash only).

    Returns (sha256 or None without ``hash_content``, archive bytes, file count, source bytes).
    """
    stream = ArchiveStream(
        descriptor,
        buffer_bytes=STREAM_BUFFER_BYTES,
        buffer_count=STREAM_BUFFERS if sink is None else SINK_STREAM_BUFFERS,
        direct_io=DIRECT_IO,
        write_back_bytes=write_back_bytes,
        sink=sink,
        hash_content=hash_content,
    )
    try:
        packer = _Packer(stream, _ProgressReporter(progress, scan.total_bytes))
        for folder_scan in scan.folders:
            packer.add_folder(folder_scan)
        for record in zipformat.central_directory(packer.entries, start=stream.tell()):
            stream.write(record)
        digest = stream.finish()
    except BaseException:
        stream.abandon()
        raise
    packer.reporter.finish()
    return digest, stream.tell(), len(packer.entries), packer.source_bytes


class _Packer:
    """Writes the members of the archive, in order, into a stream."""

    def __init__(self, stream: ArchiveStream, reporter: _ProgressReporter) -> None:
        self.stream = stream
        self.reporter = reporter
        self.entries: list[zipformat.Entry] = []
        self.source_bytes = 0
        self._scratch: memoryview | None = None  # read buffer for compressed members, made on first use
        self._probe = memoryview(bytearray(1))  # a read into it must find the end of each file

    def add_folder(self, folder_scan: FolderScan) -> None:
        """Add every file of one scanned folder; refuse if it no longer matches the scan."""
        folder = folder_scan.folder
        label = dataset_label(folder)
        fingerprint = FolderFingerprint(folder.archive_folder)
        walked = walk.walk_dataset(folder.source_dir, dataset_label=label)
        files = _read_ahead(item for item in walked if isinstance(item, walk.WalkedFile))
        for file_count, item in enumerate(files, start=1):
            if file_count > folder_scan.file_count:
                raise _folder_changed(folder_scan)
            name = layout.member_name(folder.archive_folder, item.relative_parts)
            fingerprint.add(name, item.size_bytes, item.mtime_ns)
            self._add_file(name, item, shown=f"{rules.printable_path(item.relative_parts)} in {label}")
            self.source_bytes += item.size_bytes
        if fingerprint.hexdigest() != folder_scan.fingerprint:
            raise _folder_changed(folder_scan)

    def _add_file(self, name: str, item: walk.WalkedFile, *, shown: str) -> None:
        descriptor = _open_source(item.open_path, shown=shown)
        try:
            opened = os.fstat(descriptor)
            if not stat.S_ISREG(opened.st_mode) or opened.st_size != item.size_bytes:
                raise _file_changed(shown)
            with contextlib.suppress(AttributeError, OSError):
                os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_SEQUENTIAL)
            method = rules.compression_for_name(item.relative_parts[-1])
            entry, header = zipformat.start_entry(
                name, method=method, size_bytes=item.size_bytes, offset=self.stream.tell()
            )
            self.stream.write(header)
            if method == zipformat.METHOD_STORED:
                crc = self._copy_stored(descriptor, item.size_bytes, shown=shown)
                compressed_size = item.size_bytes
            else:
                crc, compressed_size = self._copy_deflated(descriptor, item.size_bytes, shown=shown)
            if _read_into(descriptor, self._probe, shown=shown):
                raise _file_changed(shown)  # it grew while being read
            descriptor_record = zipformat.finish_entry(
                entry, crc=crc, compressed_size=compressed_size, size=item.size_bytes
            )
        finally:
            os.close(descriptor)
        self.stream.write(descriptor_record)
        self.entries.append(entry)

    def _copy_stored(self, descriptor: int, size_bytes: int, *, shown: str) -> int:
        """Read the file straight into the stream; return its CRC-32."""
        crc = 0
        remaining = size_bytes
        while remaining:
            view = self.stream.reserve(min(remaining, READ_CHUNK_BYTES))
            count = _read_into(descriptor, view, shown=shown)
            if count == 0:
                raise _file_changed(shown)  # it shrank
            crc = crc32(view[:count], crc)
            self.stream.commit(count)
            remaining -= count
            self.reporter.advance(count)
        return crc

    def _copy_deflated(self, descriptor: int, size_bytes: int, *, shown: str) -> tuple[int, int]:
        """Read and deflate the file into the stream; return its CRC-32 and compressed size."""
        if self._scratch is None:
            self._scratch = memoryview(bytearray(READ_CHUNK_BYTES))
        compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
        crc = 0
        compressed_size = 0
        remaining = size_bytes
        while remaining:
            count = _read_into(descriptor, self._scratch[: min(remaining, READ_CHUNK_BYTES)], shown=shown)
            if count == 0:
                raise _file_changed(shown)
            chunk = self._scratch[:count]
            crc = crc32(chunk, crc)
            output = compressor.compress(chunk)
            compressed_size += len(output)
            self.stream.write(output)
            remaining -= count
            self.reporter.advance(count)
        output = compressor.flush()
        self.stream.write(output)
        return crc, compressed_size + len(output)


def _read_ahead(files: Iterable[walk.WalkedFile]) -> Iterator[walk.WalkedFile]:
    """Yield ``files`` in order, asking the kernel to start reading those that follow.

    The files already hinted cover up to ``PREFETCH_BYTES`` (and at most ``PREFETCH_FILES``
    files) ahead of the one yielded, so that reads from disk overlap the packing of earlier
    files (cold page cache).
    """
    queued: deque[tuple[walk.WalkedFile, int]] = deque()
    ahead = 0
    for item in files:
        hinted = min(item.size_bytes, PREFETCH_BYTES)
        _prefetch(item, hinted)
        queued.append((item, hinted))
        ahead += hinted
        while queued and (ahead >= PREFETCH_BYTES or len(queued) > PREFETCH_FILES):
            first, first_hinted = queued.popleft()
            ahead -= first_hinted
            yield first
    for item, _ in queued:
        yield item


def _prefetch(item: walk.WalkedFile, length: int) -> None:
    """Ask the kernel to start reading the first ``length`` bytes of a file (best effort).

    Skipped when the last of those bytes is already in the page cache: the hint would only make
    the kernel look up every cached page of the range (about 26 µs for 2 MiB here, as much as
    reading a tenth of it), and a file read recently is usually cached whole.
    """
    if length <= 0:
        return
    with contextlib.suppress(AttributeError, OSError):
        descriptor = os.open(item.open_path, _OPEN_FLAGS)
        try:
            if not _is_cached(descriptor, length - 1):
                os.posix_fadvise(descriptor, 0, length, os.POSIX_FADV_WILLNEED)
        finally:
            os.close(descriptor)


def _is_cached(descriptor: int, offset: int) -> bool:
    """Return True when the byte at ``offset`` can be read without waiting for the disk.

    A read with ``RWF_NOWAIT`` (Linux) fails with EAGAIN instead of waiting; where the flag or
    the file system does not support it, the answer is False.
    """
    if _RWF_NOWAIT is None:
        return False
    try:
        return os.preadv(descriptor, [bytearray(1)], offset, _RWF_NOWAIT) == 1
    except OSError:
        return False


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


def _read_into(descriptor: int, view: memoryview, *, shown: str) -> int:
    """Read up to ``len(view)`` bytes into ``view``; return how many (0 at the end of the file)."""
    try:
        return os.readv(descriptor, [view])
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
