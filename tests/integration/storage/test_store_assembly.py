"""Multipart parts written straight into their slot of the object being assembled: completing
equal parts publishes the assembly file itself (no copy); anything else falls back to a copy that
still reads every part from where it is; a slot's recorded bytes are never overwritten."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cloudtuner.storage import FilesystemObjectStore, errors
from cloudtuner.storage.multipart import ASSEMBLY, CompletedPart, PartInfo

PART = 64 * 1024


async def body_of(data: bytes, piece: int = 7000) -> AsyncIterator[bytes]:
    for start in range(0, len(data), piece):
        yield data[start : start + piece]


async def short_body(data: bytes) -> AsyncIterator[bytes]:
    yield data[: len(data) // 2]
    raise errors.IncompleteBody()


async def read_all(store: FilesystemObjectStore, key: str) -> bytes:
    opened = await store.open_object("bucket", key)
    return b"".join([chunk async for chunk in opened.stream()])


@pytest.fixture
async def store(tmp_path: Path) -> FilesystemObjectStore:
    store = FilesystemObjectStore(tmp_path / "cloud_outputs", min_part_size=PART)
    await store.create_bucket("bucket")
    return store


async def upload(
    store: FilesystemObjectStore, upload_id: str, number: int, data: bytes, *, declared: bool = True
) -> PartInfo:
    return await store.multipart.upload_part(
        "bucket", "obj", upload_id, number, body_of(data), declared_size=len(data) if declared else None
    )


def done(parts: list[PartInfo]) -> list[CompletedPart]:
    return [CompletedPart(p.part_number, p.etag) for p in parts]


def assembly_inode(store: FilesystemObjectStore, upload_id: str) -> int:
    return (store.layout.uploads / upload_id / ASSEMBLY).stat().st_ino


async def test_equal_parts_out_of_order_are_published_without_a_copy(store: FilesystemObjectStore) -> None:
    upload_id = (await store.multipart.create("bucket", "obj")).upload_id
    data = [os.urandom(PART) for _ in range(3)] + [os.urandom(1000)]
    parts = await asyncio.gather(*(upload(store, upload_id, n, data[n - 1]) for n in (3, 1, 4, 2)))
    by_number = sorted(parts, key=lambda p: p.part_number)
    assert [p.offset for p in by_number] == [0, PART, 2 * PART, None]  # the short last part has its own file
    inode = assembly_inode(store, upload_id)
    info = await store.multipart.complete("bucket", "obj", upload_id, done(by_number))
    assert info.size == 3 * PART + 1000 and info.etag.endswith("-4")
    assert await read_all(store, "obj") == b"".join(data)
    assert store.layout.object_path("bucket", "obj").stat().st_ino == inode
    assert list(store.layout.uploads.iterdir()) == [] and list(store.layout.tmp.iterdir()) == []


async def test_a_reuploaded_part_never_overwrites_its_slot(store: FilesystemObjectStore) -> None:
    upload_id = (await store.multipart.create("bucket", "obj")).upload_id
    first, second, again = os.urandom(PART), os.urandom(PART), os.urandom(PART)
    one = await upload(store, upload_id, 1, first)
    two = await upload(store, upload_id, 2, second)
    replaced = await upload(store, upload_id, 1, again)
    assert (one.offset, replaced.offset) == (0, None)
    listed = (await store.multipart.list_parts("bucket", "obj", upload_id)).parts
    assert [(p.part_number, p.etag) for p in listed] == [(1, replaced.etag), (2, two.etag)]
    # The old ETag of part 1 is no longer the part's.
    with pytest.raises(errors.InvalidPart):
        await store.multipart.complete("bucket", "obj", upload_id, done([one, two]))
    await store.multipart.complete("bucket", "obj", upload_id, done([replaced, two]))
    assert await read_all(store, "obj") == again + second


async def test_other_part_lists_are_copied_from_where_each_part_is(store: FilesystemObjectStore) -> None:
    upload_id = (await store.multipart.create("bucket", "obj")).upload_id
    data = {n: os.urandom(PART) for n in (1, 2, 3)}
    parts = {n: await upload(store, upload_id, n, data[n]) for n in (1, 2, 3)}
    # Parts 1 and 2 only: part 3's slot holds bytes that a later Complete could still want.
    await store.multipart.complete("bucket", "obj", upload_id, done([parts[1], parts[2]]))
    assert await read_all(store, "obj") == data[1] + data[2]

    upload_id = (await store.multipart.create("bucket", "gaps")).upload_id
    kept = {n: await store.multipart.upload_part(
        "bucket", "gaps", upload_id, n, body_of(data[n]), declared_size=PART
    ) for n in (1, 3)}  # fmt: skip
    await store.multipart.complete("bucket", "gaps", upload_id, done([kept[1], kept[3]]))
    assert await read_all(store, "gaps") == data[1] + data[3]


async def test_parts_without_a_declared_or_equal_size_use_their_own_files(store: FilesystemObjectStore) -> None:
    upload_id = (await store.multipart.create("bucket", "obj")).upload_id
    a, b, c = os.urandom(PART), os.urandom(PART + 5), os.urandom(PART)
    one = await upload(store, upload_id, 1, a, declared=False)
    two = await upload(store, upload_id, 2, b)  # fixes the stride at PART + 5
    three = await upload(store, upload_id, 3, c)
    assert (one.offset, two.offset, three.offset) == (None, PART + 5, None)
    await store.multipart.complete("bucket", "obj", upload_id, done([one, two, three]))
    assert await read_all(store, "obj") == a + b + c


async def test_a_failed_slot_write_frees_the_slot(store: FilesystemObjectStore) -> None:
    upload_id = (await store.multipart.create("bucket", "obj")).upload_id
    data = os.urandom(PART)
    with pytest.raises(errors.IncompleteBody):
        await store.multipart.upload_part("bucket", "obj", upload_id, 1, short_body(data), declared_size=PART)
    retried = await upload(store, upload_id, 1, data)
    assert retried.offset == 0
    too_long = os.urandom(PART + 10)
    with pytest.raises(errors.IncompleteBody):
        await store.multipart.upload_part("bucket", "obj", upload_id, 2, body_of(too_long), declared_size=PART)
    await store.multipart.complete("bucket", "obj", upload_id, done([retried]))
    assert await read_all(store, "obj") == data


async def test_abort_removes_the_assembly(store: FilesystemObjectStore) -> None:
    upload_id = (await store.multipart.create("bucket", "obj")).upload_id
    await upload(store, upload_id, 1, os.urandom(PART))
    await store.multipart.abort("bucket", "obj", upload_id)
    assert list(store.layout.uploads.iterdir()) == []
    with pytest.raises(errors.NoSuchUpload):
        await upload(store, upload_id, 2, os.urandom(PART))
