"""The filesystem object store on its own, on a real temp folder."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from cloudtuner.storage import FilesystemObjectStore, ObjectAttributes, errors


async def body_of(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def failing_body(after: int) -> AsyncIterator[bytes]:
    yield b"x" * after
    raise ConnectionResetError("client went away")


async def read_all(store: FilesystemObjectStore, bucket: str, key: str) -> bytes:
    opened = await store.open_object(bucket, key)
    return b"".join([chunk async for chunk in opened.stream()])


@pytest.fixture
async def store(tmp_path: Path) -> FilesystemObjectStore:
    store = FilesystemObjectStore(tmp_path / "cloud_outputs")
    assert await store.create_bucket("bucket") is True
    assert await store.create_bucket("bucket") is False
    return store


def leftovers(store: FilesystemObjectStore) -> list[Path]:
    return list(store.layout.tmp.iterdir()) + list(store.layout.uploads.iterdir())


async def test_put_and_read_back_large_object_in_pieces(store: FilesystemObjectStore) -> None:
    chunks = [os.urandom(300_000) for _ in range(10)]
    info = await store.put_object(
        "bucket", "deep/path/obj.bin", body_of(*chunks), attributes=ObjectAttributes(content_type="x/y")
    )
    data = b"".join(chunks)
    assert info.etag == hashlib.md5(data).hexdigest()
    assert info.size == len(data)
    assert await read_all(store, "bucket", "deep/path/obj.bin") == data
    opened = await store.open_object("bucket", "deep/path/obj.bin")
    assert b"".join([c async for c in opened.stream(1000, 5000)]) == data[1000:6000]
    head = await store.head_object("bucket", "deep/path/obj.bin")
    assert head.content_type == "x/y"
    assert head.etag == info.etag


async def test_failed_upload_leaves_nothing_and_keeps_the_old_object(store: FilesystemObjectStore) -> None:
    await store.put_object("bucket", "model.bin", body_of(b"old"))
    with pytest.raises(ConnectionResetError):
        await store.put_object("bucket", "model.bin", failing_body(3 * 1024 * 1024))
    assert await read_all(store, "bucket", "model.bin") == b"old"
    assert leftovers(store) == []

    def refuse(_digests: object) -> dict[str, str]:
        raise errors.BadDigest()

    with pytest.raises(errors.BadDigest):
        await store.put_object("bucket", "new.bin", body_of(b"data"), verify=refuse)
    with pytest.raises(errors.NoSuchKey):
        await store.head_object("bucket", "new.bin")
    assert leftovers(store) == []


async def test_cancelled_upload_leaves_nothing(store: FilesystemObjectStore) -> None:
    started = asyncio.Event()

    async def slow_body() -> AsyncIterator[bytes]:
        for _ in range(4):
            yield b"y" * 1024 * 1024
        started.set()
        await asyncio.sleep(60)
        yield b"never"

    task = asyncio.ensure_future(store.put_object("bucket", "cancelled.bin", slow_body()))
    await asyncio.wait_for(started.wait(), timeout=10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert leftovers(store) == []
    assert not (store.root / "bucket" / "cancelled.bin").exists()


async def test_listing_order_and_pagination(store: FilesystemObjectStore) -> None:
    keys = ["a", "a-b", "a.b", "a0", "b/c", "b/c/", "b-/x", "b/c-d", "b/c/e", "b0", "é", "z/z/z"]
    stored = []
    for key in keys:
        try:
            await store.put_object("bucket", key, body_of(key.encode()))
            stored.append(key)
        except errors.S3Error:
            pass
    assert "b/c/" not in stored  # empty last segment
    assert "b/c/e" not in stored  # "b/c" is an object
    everything = await store.list_objects("bucket")
    assert [o.key for o in everything.objects] == sorted(stored, key=lambda k: k.encode())

    seen: list[str] = []
    after, after_is_prefix = None, False
    while True:
        page = await store.list_objects(
            "bucket", delimiter="/", max_keys=2, after=after, after_is_prefix=after_is_prefix
        )
        seen.extend([o.key for o in page.objects] + page.common_prefixes)
        if not page.is_truncated:
            break
        after, after_is_prefix = page.next_after, page.next_is_prefix
    assert seen == ["a", "a-b", "a.b", "a0", "b-/", "b/", "b0", "z/", "é"]


async def test_foreign_and_replaced_files(store: FilesystemObjectStore) -> None:
    folder = store.root / "bucket" / "from-provider"
    folder.mkdir(parents=True)
    (folder / "weights.json").write_text("{}")
    info = await store.head_object("bucket", "from-provider/weights.json")
    assert info.etag.endswith("-1")  # cannot pass for an MD5 of the data
    assert info.content_type == "application/json"

    await store.put_object("bucket", "replaced", body_of(b"by the store"))
    (store.root / "bucket" / "replaced").write_bytes(b"replaced behind the store's back")
    info = await store.head_object("bucket", "replaced")
    assert info.size == len(b"replaced behind the store's back")
    assert info.etag != hashlib.md5(b"by the store").hexdigest()


async def test_symlink_out_of_the_bucket_is_refused(store: FilesystemObjectStore, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("outside")
    (store.root / "bucket" / "link").symlink_to(secret)
    (store.root / "bucket" / "dirlink").symlink_to(tmp_path)
    with pytest.raises(errors.InvalidObjectKey):
        await store.open_object("bucket", "link")
    with pytest.raises(errors.InvalidObjectKey):
        await store.put_object("bucket", "dirlink/secret.txt", body_of(b"overwrite"))
    assert secret.read_text() == "outside"
    assert (await store.list_objects("bucket")).objects == []


async def test_delete_prunes_and_bucket_deletion(store: FilesystemObjectStore) -> None:
    await store.put_object("bucket", "x/y/z", body_of(b"1"))
    with pytest.raises(errors.BucketNotEmpty):
        await store.delete_bucket("bucket")
    await store.delete_object("bucket", "x/y/z")
    await store.delete_object("bucket", "x/y/z")  # idempotent
    assert list((store.root / "bucket").iterdir()) == []
    await store.delete_bucket("bucket")
    with pytest.raises(errors.NoSuchBucket):
        await store.head_bucket("bucket")
    assert [b.name for b in await store.list_buckets()] == []


async def test_concurrent_writers_of_one_key(store: FilesystemObjectStore) -> None:
    bodies = [bytes([i]) * 2_000_000 for i in range(4)]
    await asyncio.gather(*(store.put_object("bucket", "same", body_of(b)) for b in bodies))
    data = await read_all(store, "bucket", "same")
    assert data in bodies
    info = await store.head_object("bucket", "same")
    assert info.size == len(data)
    assert leftovers(store) == []


async def test_unread_stream_closes_its_file(store: FilesystemObjectStore) -> None:
    await store.put_object("bucket", "f", body_of(b"abc"))
    before = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None
    for _ in range(20):
        opened = await store.open_object("bucket", "f")
        stream = opened.stream()
        await stream.aclose()
        opened = await store.open_object("bucket", "f")
        partial = opened.stream(0, 3)
        assert await anext(partial) == b"abc"
        await partial.aclose()
    if before is not None:
        assert len(os.listdir("/proc/self/fd")) <= before + 2


async def test_remove_stale_files(store: FilesystemObjectStore) -> None:
    upload = await store.multipart.create("bucket", "slow")
    (store.layout.tmp / "put-left-behind.tmp").write_bytes(b"x")
    assert await store.remove_stale_files(timedelta(hours=1)) == 0
    assert await store.remove_stale_files(timedelta(seconds=-1)) == 2
    with pytest.raises(errors.NoSuchUpload):
        await store.multipart.list_parts("bucket", "slow", upload.upload_id)
