"""The archive stream: bytes arrive in order, hashed and written, with bounded buffers."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import random
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from cloudtuner.packaging import errors
from cloudtuner.packaging import stream as stream_module
from cloudtuner.packaging.stream import MIN_BUFFER_BYTES, ArchiveStream

BUFFER = 64 * 1024


def _feed(stream: ArchiveStream, seed: int, rounds: int) -> bytes:
    """Mix small writes, large writes and reserve/commit pairs; return what was sent."""
    rng = random.Random(seed)
    sent = bytearray()
    for _ in range(rounds):
        kind = rng.randrange(3)
        if kind == 0:
            data = rng.randbytes(rng.randrange(1, 200))
            stream.write(data)
        elif kind == 1:
            data = rng.randbytes(rng.randrange(BUFFER, 3 * BUFFER))
            stream.write(memoryview(data))
        else:
            view = stream.reserve(rng.randrange(1, 2 * BUFFER))
            filled = rng.randrange(0, len(view) + 1)
            data = rng.randbytes(filled)
            view[:filled] = data
            stream.commit(filled)
        sent += data
        assert stream.tell() == len(sent)
    return bytes(sent)


@pytest.mark.parametrize("direct_io", [True, False])
def test_everything_written_arrives_in_order_and_is_hashed(tmp_path: Path, direct_io: bool) -> None:
    path = tmp_path / "out.bin"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        stream = ArchiveStream(descriptor, buffer_bytes=BUFFER, buffer_count=3, direct_io=direct_io)
        sent = _feed(stream, seed=1, rounds=400)
        digest = stream.finish()
    finally:
        os.close(descriptor)
    assert path.read_bytes() == sent
    assert digest == hashlib.sha256(sent).hexdigest()


def test_without_a_file_it_only_hashes() -> None:
    stream = ArchiveStream(None, buffer_bytes=BUFFER, buffer_count=2)
    sent = _feed(stream, seed=2, rounds=200)
    assert stream.finish() == hashlib.sha256(sent).hexdigest()


def test_reserve_hands_out_the_room_left_and_full_buffers_go_on_at_once() -> None:
    stream = ArchiveStream(None, buffer_bytes=BUFFER, buffer_count=2)
    stream.write(b"x" * (BUFFER - 100))
    view = stream.reserve(10 * BUFFER)
    assert len(view) == 100  # the rest of the current buffer: buffers are handed on full
    view[:] = b"y" * 100
    stream.commit(100)
    assert len(stream.reserve(10 * BUFFER)) == BUFFER  # a fresh buffer
    stream.commit(0)
    small = stream.reserve(50)
    assert len(small) == 50
    stream.commit(50)
    assert stream.tell() == BUFFER + 50
    assert stream.finish() == hashlib.sha256(b"x" * (BUFFER - 100) + b"y" * 100 + bytes(50)).hexdigest()


def test_commit_must_follow_a_reserve_and_fit_it() -> None:
    stream = ArchiveStream(None, buffer_bytes=BUFFER, buffer_count=2)
    with pytest.raises(ValueError, match="reserve"):
        stream.commit(1)
    stream.reserve(10)
    with pytest.raises(ValueError, match="reserve"):
        stream.commit(BUFFER + 1)
    stream.abandon()


def test_a_stream_needs_room_to_work() -> None:
    with pytest.raises(ValueError, match="two buffers"):
        ArchiveStream(None, buffer_bytes=BUFFER, buffer_count=1)
    with pytest.raises(ValueError, match="64 KiB"):
        ArchiveStream(None, buffer_bytes=MIN_BUFFER_BYTES + 1, buffer_count=2)


def test_a_write_failure_is_raised_as_an_archive_write_error() -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # writing now fails with EPIPE (Python ignores SIGPIPE)
    try:
        stream = ArchiveStream(write_end, buffer_bytes=BUFFER, buffer_count=2)
        stream.write(b"y" * BUFFER)  # handed on to the writer, which fails
        with pytest.raises(errors.ArchiveWriteError, match="could not be written"):
            stream.finish()
        stream.abandon()
    finally:
        os.close(write_end)


def test_a_write_failure_stops_the_caller_at_its_next_buffer() -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        stream = ArchiveStream(write_end, buffer_bytes=BUFFER, buffer_count=2)
        stream.write(b"y" * BUFFER)
        stream.write(b"y" * BUFFER)  # the second buffer waits until the writer has released the first
        with pytest.raises(errors.ArchiveWriteError, match="Broken pipe"):
            stream.write(b"y" * BUFFER)
        stream.abandon()
    finally:
        os.close(write_end)


def test_abandon_stops_the_threads_and_is_idempotent() -> None:
    before = {thread.name for thread in threading.enumerate()}
    stream = ArchiveStream(None, buffer_bytes=BUFFER, buffer_count=2)
    stream.write(b"z" * (3 * BUFFER))
    stream.abandon()
    stream.abandon()
    after = {thread.name for thread in threading.enumerate()}
    assert not {name for name in after - before if name.startswith("cloudtuner-archive")}
    with pytest.raises(ValueError, match="closed"):
        stream.write(b"late" * BUFFER)


def _direct_io_works(folder: Path) -> bool:
    probe = os.open(folder / "probe", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        return stream_module._set_direct_io(probe, on=True)
    finally:
        os.close(probe)


def test_direct_io_lasts_until_the_last_partial_buffer(tmp_path: Path) -> None:
    if not _direct_io_works(tmp_path):
        pytest.skip("this file system has no direct I/O")
    path = tmp_path / "out.bin"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        stream = ArchiveStream(descriptor, buffer_bytes=BUFFER, buffer_count=2)
        assert stream.direct_io
        stream.write(b"a" * (3 * BUFFER))
        stream.write(b"tail")
        stream.finish()
        assert not stream.direct_io  # switched off for the tail, which is not a whole block
    finally:
        os.close(descriptor)
    assert path.read_bytes() == b"a" * (3 * BUFFER) + b"tail"


def test_a_file_system_that_refuses_direct_writes_gets_ordinary_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not _direct_io_works(tmp_path):
        pytest.skip("this file system has no direct I/O")
    real_writev = os.writev

    def refuse_direct(descriptor: int, buffers: list[memoryview]) -> int:
        if fcntl.fcntl(descriptor, fcntl.F_GETFL) & os.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_writev(descriptor, buffers)

    monkeypatch.setattr(os, "writev", refuse_direct)
    path = tmp_path / "out.bin"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        stream = ArchiveStream(descriptor, buffer_bytes=BUFFER, buffer_count=2)
        sent = _feed(stream, seed=3, rounds=100)
        stream.finish()
        assert not stream.direct_io
    finally:
        os.close(descriptor)
    assert path.read_bytes() == sent


def test_short_writes_are_continued() -> None:
    views = [memoryview(b"abc"), memoryview(b"defg"), memoryview(b"h")]
    assert [bytes(view) for view in stream_module._drop_front(views, 0)] == [b"abc", b"defg", b"h"]
    assert [bytes(view) for view in stream_module._drop_front(views, 2)] == [b"c", b"defg", b"h"]
    assert [bytes(view) for view in stream_module._drop_front(views, 3)] == [b"defg", b"h"]
    assert [bytes(view) for view in stream_module._drop_front(views, 5)] == [b"fg", b"h"]
    assert stream_module._drop_front(views, 8) == []


def test_only_whole_blocks_at_block_offsets_are_written_directly() -> None:
    block = stream_module.DIRECT_IO_ALIGNMENT
    views = [memoryview(bytes(block)), memoryview(bytes(2 * block)), memoryview(bytes(10)), memoryview(bytes(block))]
    assert stream_module._aligned_prefix(views, 0) == 2
    assert stream_module._aligned_prefix(views, block) == 2
    assert stream_module._aligned_prefix(views, 10) == 0
    assert stream_module._aligned_prefix(views[2:], 0) == 0


def _collector(received: bytearray) -> Callable[[Sequence[memoryview]], None]:
    def collect(views: Sequence[memoryview]) -> None:
        for view in views:
            received.extend(view)

    return collect


def test_a_sink_gets_every_byte_in_order_without_a_hash() -> None:
    received = bytearray()
    stream = ArchiveStream(None, buffer_bytes=BUFFER, buffer_count=2, sink=_collector(received), hash_content=False)
    sent = _feed(stream, seed=3, rounds=300)
    assert stream.finish() is None
    assert bytes(received) == sent


def test_a_sink_and_a_hash_see_the_same_bytes() -> None:
    received = bytearray()
    stream = ArchiveStream(None, buffer_bytes=BUFFER, buffer_count=3, sink=_collector(received))
    sent = _feed(stream, seed=4, rounds=200)
    assert stream.finish() == hashlib.sha256(sent).hexdigest() == hashlib.sha256(received).hexdigest()


class _Refused(Exception):
    pass


def test_a_sink_failure_stops_the_caller_with_the_sink_s_own_error() -> None:
    def refuse(views: object) -> None:
        raise _Refused("receiver gone")

    stream = ArchiveStream(None, buffer_bytes=BUFFER, buffer_count=2, sink=refuse, hash_content=False)

    def write_until_refused() -> None:
        for _ in range(4):  # by the third buffer, one must have come back from the failed sink
            stream.write(b"q" * BUFFER)

    with pytest.raises(_Refused, match="receiver gone"):
        write_until_refused()
    stream.abandon()


def test_a_stream_must_go_somewhere() -> None:
    with pytest.raises(ValueError, match="a file, a sink or the hash"):
        ArchiveStream(None, buffer_bytes=BUFFER, buffer_count=2, hash_content=False)
