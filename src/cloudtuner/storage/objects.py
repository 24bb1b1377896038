"""The object store: buckets as folders, objects as files, on the local filesystem.

:class:`FilesystemObjectStore` is the storage side of the S3 endpoint, usable on its own (the
server also uses it to create buckets and to find delivered files). Every method is async and does
its disk work in worker threads. Objects are streamed to a temp file and renamed into place only
once complete and verified, so readers never see a partial object and a failed or aborted upload
leaves nothing behind. See :mod:`cloudtuner.storage.layout` for the on-disk layout and
:mod:`cloudtuner.storage.keys` for which keys are accepted.

Errors: NoSuchBucket, NoSuchKey, BucketNotEmpty, InvalidBucketName, InvalidObjectKey,
KeyTooLongError, KeyConflict (a key cannot be both an object and a folder of other objects),
PreconditionFailed, and whatever the ``verify`` callback of a write raises.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from stat import S_ISREG

from cloudtuner.storage import diskio, errors, keys, layout, listing
from cloudtuner.storage.layout import ObjectAttributes, ObjectInfo
from cloudtuner.storage.multipart import MultipartUploads

#: Called with the digests of a complete upload (raw bytes by algorithm) before it is published;
#: raises to refuse it, returns the flexible checksums (base64 by algorithm) to record.
Verifier = Callable[[Mapping[str, bytes]], Mapping[str, str]]

DEFAULT_MIN_PART_SIZE = 5 * 1024 * 1024


@dataclass(frozen=True)
class BucketInfo:
    """A bucket and when it was created."""

    name: str
    created: datetime


class OpenObject:
    """An object opened for reading: its metadata and an open descriptor on its data.

    Call :meth:`stream` once to read it (the stream then owns and closes the descriptor), or
    :meth:`aclose` if it will not be read. Reads come from the file as it was when opened, even if
    the key is overwritten meanwhile.
    """

    def __init__(self, info: ObjectInfo, fd: int) -> None:
        """Wrap the open descriptor ``fd`` of the object described by ``info``."""
        self.info = info
        self._fd: int | None = fd

    def stream(self, start: int = 0, length: int | None = None) -> diskio.FileStream:
        """Return an async iterator over ``length`` bytes from ``start`` (default: to the end)."""
        if self._fd is None:
            raise errors.InternalError("The object was already streamed or closed.")
        fd, self._fd = self._fd, None
        size = self.info.size - start if length is None else length
        return diskio.FileStream(fd, start, size)

    def detach(self) -> int:
        """Return the open descriptor, which the caller now owns and must close."""
        if self._fd is None:
            raise errors.InternalError("The object was already streamed or closed.")
        fd, self._fd = self._fd, None
        return fd

    async def aclose(self) -> None:
        """Close the descriptor if it was not handed to a stream."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)


class FilesystemObjectStore:
    """An S3-style object store rooted at a folder.

    ``fsync``: flush every object to stable storage before publishing it (slower; off by default,
    the rename is atomic either way). ``min_part_size``: the smallest size of a multipart upload's
    parts but the last (S3: 5 MiB).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        fsync: bool = False,
        min_part_size: int = DEFAULT_MIN_PART_SIZE,
    ) -> None:
        """Open (and create if needed) the store at ``root``.

        Also sets this process's allocator up for transfers
        (:func:`~cloudtuner.storage.diskio.tune_malloc_for_transfers`): transfer buffers are reused
        rather than mapped afresh, and its memory stays flat however many objects it moves.
        """
        diskio.tune_malloc_for_transfers()
        self.layout = layout.StoreLayout(Path(root).absolute())
        self._fsync = fsync
        self.multipart = MultipartUploads(
            self.layout,
            require_bucket=self._require_bucket,
            publish=self._publish,
            min_part_size=min_part_size,
            fsync=fsync,
        )

    @property
    def root(self) -> Path:
        """The folder holding the buckets."""
        return self.layout.root

    # --- buckets ---------------------------------------------------------------------------------

    async def list_buckets(self) -> list[BucketInfo]:
        """Return every bucket, sorted by name."""
        return await asyncio.to_thread(self._list_buckets)

    def _list_buckets(self) -> list[BucketInfo]:
        buckets = []
        with os.scandir(self.layout.root) as scanner:
            for entry in scanner:
                if not entry.is_dir(follow_symlinks=False):
                    continue
                try:
                    keys.validate_bucket_name(entry.name)
                except errors.InvalidBucketName:
                    continue
                buckets.append(BucketInfo(entry.name, self._bucket_created(entry.name)))
        return sorted(buckets, key=lambda bucket: bucket.name)

    def _bucket_created(self, bucket: str) -> datetime:
        record = layout.read_json(self.layout.meta / bucket / "bucket.json")
        if record is not None and isinstance(record.get("created"), int | float):
            return datetime.fromtimestamp(float(record["created"]), tz=UTC)
        stat = self.layout.bucket_dir(bucket).stat()
        return datetime.fromtimestamp(stat.st_mtime, tz=UTC)

    async def create_bucket(self, bucket: str) -> bool:
        """Create ``bucket``; return False if it already existed. Raise InvalidBucketName."""
        return await asyncio.to_thread(self._create_bucket, bucket)

    def _create_bucket(self, bucket: str) -> bool:
        folder = self.layout.bucket_dir(bucket)
        try:
            folder.mkdir()
        except FileExistsError:
            if not folder.is_dir():
                raise errors.InvalidBucketName("A file with the bucket's name is in the way.") from None
            return False
        layout.write_json_atomic(self.layout.meta / bucket / "bucket.json", {"created": time.time()}, self.layout.tmp)
        return True

    async def head_bucket(self, bucket: str) -> None:
        """Return if ``bucket`` exists; raise NoSuchBucket (or InvalidBucketName) otherwise."""
        await asyncio.to_thread(self._require_bucket, bucket)

    def _require_bucket(self, bucket: str) -> Path:
        folder = self.layout.bucket_dir(bucket)
        if not folder.is_dir():
            raise errors.NoSuchBucket(BucketName=bucket)
        return folder

    async def delete_bucket(self, bucket: str) -> None:
        """Delete the empty ``bucket``; raise NoSuchBucket, or BucketNotEmpty if it holds objects."""
        await asyncio.to_thread(self._delete_bucket, bucket)

    def _delete_bucket(self, bucket: str) -> None:
        folder = self._require_bucket(bucket)
        for _dirpath, _dirnames, filenames in os.walk(folder):
            if filenames:
                raise errors.BucketNotEmpty(BucketName=bucket)
        shutil.rmtree(folder)
        shutil.rmtree(self.layout.meta / bucket, ignore_errors=True)

    # --- objects ---------------------------------------------------------------------------------

    async def put_object(
        self,
        bucket: str,
        key: str,
        body: AsyncIterator[bytes],
        *,
        algorithms: Iterable[str] = (),
        verify: Verifier | None = None,
        attributes: ObjectAttributes | None = None,
        if_none_match: bool = False,
    ) -> ObjectInfo:
        """Stream ``body`` into object ``key`` of ``bucket`` and publish it atomically.

        ``algorithms`` are digests to compute besides MD5 (for ``verify``). ``if_none_match``
        refuses to replace an existing object (PreconditionFailed). On any error, the body's own
        included, nothing is published and the temp file is removed.
        """
        await asyncio.to_thread(self._check_target, bucket, key)
        sink = await asyncio.to_thread(diskio.TempFile, self.layout.tmp, {"md5", *algorithms})
        try:
            await diskio.pump(body, sink)
            digests = sink.digests.digests()
            recorded = dict(verify(digests)) if verify is not None else {}
            info = ObjectInfo(
                bucket=bucket,
                key=key,
                size=sink.digests.size,
                etag=digests["md5"].hex(),
                last_modified=datetime.now(UTC),
                content_type=_content_type(attributes),
                metadata=dict(attributes.metadata) if attributes else {},
                headers=dict(attributes.headers) if attributes else {},
                checksums=recorded,
            )
            return await asyncio.to_thread(self._publish, sink, info, if_none_match)
        except BaseException:
            await diskio.discard(sink)
            raise

    def _check_target(self, bucket: str, key: str) -> None:
        self._require_bucket(bucket)
        path = self.layout.object_path(bucket, key)
        if path.is_dir() and not path.is_symlink():
            raise errors.KeyConflict(Key=key)

    def _publish(self, sink: diskio.TempFile, info: ObjectInfo, if_none_match: bool = False) -> ObjectInfo:
        """Move the finished ``sink`` to ``info``'s key and record its sidecar (worker thread)."""
        stat = sink.finish(self._fsync)
        folder = self._require_bucket(info.bucket)
        for _attempt in range(5):
            target = self.layout.object_path(info.bucket, info.key)
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                keys.path_under(folder, info.key)
                if if_none_match:
                    os.link(sink.path, target)
                    sink.path.unlink()
                else:
                    os.replace(sink.path, target)
            except FileNotFoundError:
                continue  # a concurrent delete pruned the folder we just made; make it again
            except FileExistsError:
                if if_none_match and not target.is_dir():
                    raise errors.PreconditionFailed(Condition="If-None-Match") from None
                raise errors.KeyConflict(Key=info.key) from None
            except (IsADirectoryError, NotADirectoryError):
                raise errors.KeyConflict(Key=info.key) from None
            published = replace(info, last_modified=datetime.fromtimestamp(stat.st_mtime_ns / 1e9, tz=UTC))
            layout.write_json_atomic(
                self.layout.sidecar_path(info.bucket, info.key),
                layout.sidecar_document(published, stat),
                self.layout.tmp,
            )
            return published
        raise errors.InternalError("The object could not be published; try again.")

    async def head_object(self, bucket: str, key: str) -> ObjectInfo:
        """Return the metadata of object ``key``; raise NoSuchBucket or NoSuchKey."""
        opened = await self.open_object(bucket, key)
        await opened.aclose()
        return opened.info

    async def open_object(self, bucket: str, key: str) -> OpenObject:
        """Open object ``key`` for reading; raise NoSuchBucket or NoSuchKey."""
        return await asyncio.to_thread(self._open_object, bucket, key)

    def _open_object(self, bucket: str, key: str) -> OpenObject:
        self._require_bucket(bucket)
        path = self.layout.object_path(bucket, key)
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise errors.NoSuchKey(Key=key) from None
        try:
            stat = os.fstat(fd)
            if not _is_regular(stat):
                raise errors.NoSuchKey(Key=key)
            sidecar = layout.read_json(self.layout.sidecar_path(bucket, key))
            return OpenObject(layout.info_from_stat(bucket, key, stat, sidecar), fd)
        except BaseException:
            os.close(fd)
            raise

    async def delete_object(self, bucket: str, key: str) -> None:
        """Delete object ``key`` if it exists (no error when it does not); raise NoSuchBucket."""
        await asyncio.to_thread(self._delete_object, bucket, key)

    def _delete_object(self, bucket: str, key: str) -> None:
        folder = self._require_bucket(bucket)
        path = self.layout.object_path(bucket, key)
        if path.is_dir() and not path.is_symlink():
            return
        path.unlink(missing_ok=True)
        self.layout.sidecar_path(bucket, key).unlink(missing_ok=True)
        layout.prune_empty_dirs(path.parent, folder)

    async def delete_prefix(self, bucket: str, prefix: str) -> int:
        """Delete every object whose key starts with ``prefix`` (a folder, ending in '/'); return how many.

        Raise NoSuchBucket, or InvalidObjectKey for a prefix that is not a folder of valid keys.
        """
        return await asyncio.to_thread(self._delete_prefix, bucket, prefix)

    def _delete_prefix(self, bucket: str, prefix: str) -> int:
        folder = self._require_bucket(bucket)
        if not prefix.endswith("/"):
            raise errors.InvalidObjectKey("Only a folder (a prefix ending in '/') can be deleted whole.")
        top = self.layout.object_path(bucket, prefix.rstrip("/"))
        if not top.is_dir() or top.is_symlink():
            return 0
        removed = 0
        for dirpath, _dirnames, filenames in os.walk(top):
            for name in filenames:
                path = Path(dirpath) / name
                key = path.relative_to(folder).as_posix()
                path.unlink(missing_ok=True)
                self.layout.sidecar_path(bucket, key).unlink(missing_ok=True)
                removed += 1
        shutil.rmtree(top, ignore_errors=True)
        layout.prune_empty_dirs(top.parent, folder)
        return removed

    async def sha256_of(self, bucket: str, key: str) -> tuple[ObjectInfo, str]:
        """Return the object's metadata and the SHA-256 (hex) of its data, read in a worker thread.

        Both describe the same file (the one opened), even if the key is overwritten meanwhile.
        Raise NoSuchBucket or NoSuchKey.
        """
        return await asyncio.to_thread(self._sha256_of, bucket, key)

    def _sha256_of(self, bucket: str, key: str) -> tuple[ObjectInfo, str]:
        opened = self._open_object(bucket, key)
        fd = opened.detach()
        try:
            digest = hashlib.sha256()
            offset = 0
            while chunk := os.pread(fd, diskio.READ_CHUNK, offset):
                digest.update(chunk)
                offset += len(chunk)
        finally:
            os.close(fd)
        return opened.info, digest.hexdigest()

    async def list_objects(
        self,
        bucket: str,
        *,
        prefix: str = "",
        delimiter: str | None = None,
        max_keys: int = 1000,
        after: str | None = None,
        after_is_prefix: bool = False,
        key_filter: str = "",
    ) -> listing.ListPage:
        """Return one page of ``bucket``'s objects and common prefixes in S3 order.

        The page starts strictly after ``after`` (and past every key starting with it when
        ``after_is_prefix``). ``key_filter`` additionally confines the listing to keys starting
        with it. Raise NoSuchBucket.
        """
        return await asyncio.to_thread(
            self._list_objects, bucket, prefix, delimiter, max_keys, after, after_is_prefix, key_filter
        )

    def _list_objects(
        self,
        bucket: str,
        prefix: str,
        delimiter: str | None,
        max_keys: int,
        after: str | None,
        after_is_prefix: bool,
        key_filter: str,
    ) -> listing.ListPage:
        folder = self._require_bucket(bucket)

        def describe(key: str, stat: os.stat_result) -> ObjectInfo:
            sidecar = layout.read_json(self.layout.sidecar_path(bucket, key))
            return layout.info_from_stat(bucket, key, stat, sidecar)

        return listing.list_page(
            str(folder),
            prefix=prefix,
            delimiter=delimiter,
            max_keys=max_keys,
            cursor=listing.Cursor(after, after_is_prefix),
            describe=describe,
            key_filter=key_filter,
        )

    # --- housekeeping ----------------------------------------------------------------------------

    async def remove_stale_files(self, older_than: timedelta) -> int:
        """Remove temp files and multipart uploads untouched for ``older_than``; return how many.

        Meant for a periodic background task; safe while uploads are running as long as
        ``older_than`` is longer than any single upload takes.
        """
        return await asyncio.to_thread(self._remove_stale_files, older_than)

    def _remove_stale_files(self, older_than: timedelta) -> int:
        cutoff = time.time() - older_than.total_seconds()
        removed = 0
        with os.scandir(self.layout.tmp) as scanner:
            for entry in scanner:
                if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                    Path(entry.path).unlink(missing_ok=True)
                    removed += 1
        return removed + self.multipart.remove_stale(cutoff)


def _content_type(attributes: ObjectAttributes | None) -> str:
    if attributes is None or not attributes.content_type:
        return layout.DEFAULT_CONTENT_TYPE
    return attributes.content_type


def _is_regular(stat: os.stat_result) -> bool:
    return S_ISREG(stat.st_mode)
