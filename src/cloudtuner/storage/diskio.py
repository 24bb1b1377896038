"""Streaming between async byte streams and files, with the disk work in worker threads.

Uploads go to a :class:`TempFile` in batches of about :data:`WRITE_BATCH` bytes; each batch is
hashed and written (one ``writev`` of the chunks as received, never joined into a copy) in a
worker thread while the event loop receives the next one. Downloads read
the file with ``os.pread`` in a worker thread, one chunk ahead of the one being sent. Neither ever
holds more than a couple of batches in memory, and the event loop never waits on the disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from pathlib import Path
from typing import Protocol

from cloudtuner.storage import errors
from cloudtuner.storage.checksums import DigestSet

WRITE_BATCH = 256 * 1024
READ_CHUNK = 256 * 1024
_IOV_MAX = 512


_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
#: Buffers up to this size come from the heap and are reused, never mapped afresh per buffer.
_MMAP_THRESHOLD_BYTES = 16 * 1024 * 1024
#: Free memory past this much at the top of the heap goes back to the OS.
_TRIM_THRESHOLD_BYTES = 1024 * 1024
_tuned = False


def tune_malloc_for_transfers() -> bool:
    """Set glibc's allocator up for a process that moves large objects through short-lived buffers.

    Every chunk of a transfer is a buffer of 64 KiB to a few MiB (the HTTP server's reads, the
    request body messages, file reads), allocated by one thread and freed by another. glibc's
    defaults serve them badly both ways: buffers past its mmap threshold are mapped and unmapped one
    by one (the kernel zeroes and faults in every page: a third of the server's CPU time on a large
    upload went there), and once glibc raises that threshold on its own, freed buffers pile up in
    per-thread heaps (a server that moved a few objects in parallel stays tens of MiB larger for
    good). So: buffers up to 16 MiB come from the heap and are reused; a single heap serves every
    thread (``M_ARENA_MAX=1``; worker threads allocate little but file reads); and free memory
    past 1 MiB at the top of the heap goes back to the OS. Memory stays at the peak of what is in
    flight, without the per-buffer cost.

    Process-wide and done once, best before the process starts its threads; returns whether it
    took effect (False on other C libraries, where nothing changes).
    """
    global _tuned  # noqa: PLW0603 - a process-wide setting, applied once
    if _tuned:
        return True
    try:
        import ctypes
        import ctypes.util

        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        _tuned = all(
            libc.mallopt(option, value) == 1
            for option, value in (
                (_M_ARENA_MAX, 1),
                (_M_TRIM_THRESHOLD, _TRIM_THRESHOLD_BYTES),
                (_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES),
            )
        )
    except (OSError, AttributeError):
        _tuned = False
    return _tuned


class TempFile:
    """A file being written in the store's temp folder, hashed as it is written.

    Thread-safe: :meth:`write`, :meth:`finish` and :meth:`discard` may be called from different
    worker threads; :meth:`discard` waits for a write in progress and then removes the file.
    """

    def __init__(self, directory: Path, algorithms: Iterable[str], prefix: str = "put-") -> None:
        """Create the temp file in ``directory`` and start the ``algorithms`` digests."""
        fd, name = tempfile.mkstemp(dir=directory, prefix=prefix, suffix=".tmp")
        self.path = Path(name)
        self.digests = DigestSet(algorithms)
        self._fd: int | None = fd
        self._lock = threading.Lock()
        self._keep = False

    def write(self, data: bytes) -> None:
        """Hash and append ``data``; raise InternalError if the file was already closed."""
        self.write_chunks([data])

    def write_chunks(self, chunks: list[bytes]) -> None:
        """Hash and append ``chunks`` in order, with one ``writev`` where it can (no joined copy).

        Raise InternalError if the file was already closed.
        """
        with self._lock:
            if self._fd is None:
                raise errors.InternalError("The upload was discarded.")
            for chunk in chunks:
                self.digests.update(chunk)
            views = [memoryview(chunk) for chunk in chunks if chunk]
            while views:
                written = os.writev(self._fd, views[:_IOV_MAX])
                while views and written >= len(views[0]):
                    written -= len(views[0])
                    views.pop(0)
                if views and written:
                    views[0] = views[0][written:]

    def append_file(self, path: Path, size: int, offset: int = 0) -> None:
        """Append ``size`` bytes of the file at ``path`` from ``offset`` (in the kernel where possible)."""
        with self._lock, path.open("rb") as source:
            if self._fd is None:
                raise errors.InternalError("The upload was discarded.")
            source.seek(offset)
            remaining = size
            while remaining > 0:
                try:
                    copied = os.copy_file_range(source.fileno(), self._fd, remaining)
                except OSError:
                    copied = self._copy_by_reading(source.fileno(), min(remaining, READ_CHUNK))
                if copied <= 0:
                    raise errors.InternalError(f"{path.name} is shorter than recorded.")
                remaining -= copied

    def _copy_by_reading(self, source_fd: int, amount: int) -> int:
        assert self._fd is not None
        data = os.read(source_fd, amount)
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]
        return len(data)

    def finish(self, fsync: bool) -> os.stat_result:
        """Close the file (after ``fsync`` if asked) and return its final ``stat``."""
        with self._lock:
            if self._fd is None:
                raise errors.InternalError("The upload was discarded.")
            fd, self._fd = self._fd, None
            try:
                if fsync:
                    os.fsync(fd)
                return os.fstat(fd)
            finally:
                os.close(fd)

    def discard(self) -> None:
        """Close and remove the file (an adopted one is kept); harmless when already renamed away."""
        with self._lock:
            if self._fd is not None:
                fd, self._fd = self._fd, None
                os.close(fd)
            if not self._keep:
                self.path.unlink(missing_ok=True)

    @classmethod
    def adopt(cls, path: Path) -> TempFile:
        """Wrap an existing, complete file to publish it as it is (no digests; ``discard`` closes it
        without removing it, so that a failed publish leaves it where it was)."""
        adopted = cls.__new__(cls)
        adopted.path = path
        adopted.digests = DigestSet(())
        adopted._fd = os.open(path, os.O_WRONLY | getattr(os, "O_CLOEXEC", 0))
        adopted._lock = threading.Lock()
        adopted._keep = True
        return adopted


class SlotWriter:
    """Writes one multipart part straight into its slot of a shared assembly file (``pwrite`` at
    ``offset``), hashing it as :class:`TempFile` does; at most ``limit`` bytes fit in the slot.

    The assembly file is never truncated or removed by a writer; :meth:`discard` only closes it.
    """

    def __init__(self, path: Path, offset: int, limit: int, algorithms: Iterable[str]) -> None:
        """Open (creating if needed) the assembly file at ``path`` for the slot at ``offset``."""
        self.path = path
        self.digests = DigestSet(algorithms)
        self._offset = offset
        self._limit = limit
        self._written = 0
        self._fd: int | None = os.open(path, os.O_WRONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
        self._lock = threading.Lock()

    def write_chunks(self, chunks: list[bytes]) -> None:
        """Hash and write ``chunks`` at the slot's next position; raise if they overflow the slot."""
        with self._lock:
            if self._fd is None:
                raise errors.InternalError("The upload was discarded.")
            size = sum(len(chunk) for chunk in chunks)
            if self._written + size > self._limit:
                raise errors.IncompleteBody("The body is longer than its declared length.")
            for chunk in chunks:
                self.digests.update(chunk)
            views = [memoryview(chunk) for chunk in chunks if chunk]
            position = self._offset + self._written
            while views:
                written = os.pwritev(self._fd, views[:_IOV_MAX], position)
                position += written
                while views and written >= len(views[0]):
                    written -= len(views[0])
                    views.pop(0)
                if views and written:
                    views[0] = views[0][written:]
            self._written += size

    @property
    def size(self) -> int:
        """Bytes written to the slot so far."""
        return self._written

    def finish(self, fsync: bool) -> None:
        """Close the assembly file (after ``fsync`` if asked)."""
        with self._lock:
            if self._fd is None:
                raise errors.InternalError("The upload was discarded.")
            fd, self._fd = self._fd, None
            try:
                if fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)

    def discard(self) -> None:
        """Close the assembly file; the slot's bytes stay (no record points at them)."""
        with self._lock:
            if self._fd is not None:
                fd, self._fd = self._fd, None
                os.close(fd)


class ChunkSink(Protocol):
    """Where :func:`pump` writes: a :class:`TempFile` or a :class:`SlotWriter`."""

    def write_chunks(self, chunks: list[bytes]) -> None: ...

    def discard(self) -> None: ...


async def pump(body: AsyncIterator[bytes], sink: ChunkSink, batch: int = WRITE_BATCH) -> None:
    """Copy ``body`` into ``sink``, writing batch *n* in a thread while batch *n+1* is received.

    On any error (the body's own S3 errors included) the error propagates after the write in flight
    has finished; the caller discards the sink.
    """
    pending: asyncio.Future[None] | None = None
    parts: list[bytes] = []
    size = 0
    try:
        async for chunk in body:
            if not chunk:
                continue
            parts.append(chunk)
            size += len(chunk)
            if size >= batch:
                data, parts, size = parts, [], 0
                if pending is not None:
                    await pending
                pending = asyncio.ensure_future(asyncio.to_thread(sink.write_chunks, data))
        if pending is not None:
            await pending
            pending = None
        if parts:
            await asyncio.to_thread(sink.write_chunks, parts)
    finally:
        if pending is not None:
            await _settle(pending)


async def _settle(future: asyncio.Future[None]) -> None:
    """Wait for ``future`` even while being cancelled, and swallow its outcome."""
    if not future.done():
        with contextlib.suppress(BaseException):
            await asyncio.shield(future)
    if future.done() and not future.cancelled():
        future.exception()


async def discard(sink: ChunkSink) -> None:
    """Discard ``sink`` in a thread, also when the calling task is being cancelled."""
    task = asyncio.ensure_future(asyncio.to_thread(sink.discard))
    await _settle(task)


class FileStream:
    """An async iterator over ``length`` bytes of the open file ``fd`` from ``start``; owns ``fd``.

    The next chunk is read in a worker thread while the current one is being sent. ``fd`` is
    closed when the stream is exhausted, fails, or is closed with :meth:`aclose` (also before the
    first read); a read in flight is waited for first, so the descriptor is never closed under a
    reader.
    """

    def __init__(self, fd: int, start: int, length: int, chunk: int = READ_CHUNK) -> None:
        """Stream ``length`` bytes of ``fd`` from offset ``start`` in chunks of ``chunk`` bytes."""
        self._fd: int | None = fd
        self._chunks = _read_chunks(fd, start, length, chunk)
        self._started = False

    def __aiter__(self) -> FileStream:
        return self

    async def __anext__(self) -> bytes:
        if not self._started:
            self._started = True
            self._fd = None  # the generator owns the descriptor from now on
        return await anext(self._chunks)

    async def aclose(self) -> None:
        """Stop reading and close the file."""
        if not self._started:
            self._started = True
            self._close_unstarted()
        await self._chunks.aclose()

    def _close_unstarted(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def __del__(self) -> None:
        self._close_unstarted()


async def _read_chunks(fd: int, start: int, length: int, chunk: int) -> AsyncGenerator[bytes, None]:
    pending: asyncio.Future[bytes] | None = None
    try:
        offset, remaining = start, length
        if remaining > 0:
            pending = asyncio.ensure_future(asyncio.to_thread(os.pread, fd, min(chunk, remaining), offset))
        while pending is not None:
            data = await pending
            pending = None
            if not data:
                raise errors.InternalError("The object was truncated while it was being read.")
            offset += len(data)
            remaining -= len(data)
            if remaining > 0:
                pending = asyncio.ensure_future(asyncio.to_thread(os.pread, fd, min(chunk, remaining), offset))
            yield data
    finally:
        if pending is not None:
            with contextlib.suppress(BaseException):
                await asyncio.shield(pending)
            if pending.done() and not pending.cancelled():
                pending.exception()
        os.close(fd)
