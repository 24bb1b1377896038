"""Multipart uploads: create, upload part, complete, abort, list parts.

Each upload in progress is a folder ``.cloudtuner-s3/uploads/<upload id>/`` holding
``upload.json`` (bucket, key, attributes) and a ``NNNNN.json`` record per part. Completing or
aborting first renames the upload's folder, so two concurrent requests cannot both act on one
upload, and an aborted upload leaves nothing behind. The ETag is S3's: the MD5 of the parts'
binary MD5s, then ``-<number of parts>``.

Where a part's bytes go:

- **Its slot of ``assembly.bin``** when the request declares its length and that length is the
  upload's *stride* (the first declared length of at least the minimum part size, fixed in
  ``stride.json``): part N is written at offset ``(N-1) * stride``, as clients that cut an object
  into equal parts (boto3, the aws CLI) send them. A ``NNNNN.slot`` marker, created exclusively,
  gives the slot to one writer; a part number whose slot is taken (a re-upload, or two uploads of
  it at once) goes to its own file instead, so a recorded part's bytes are never overwritten.
- **Its own file** ``NNNNN.part`` otherwise.

Completing parts 1..n whose first n-1 sit in their slots (and with no slotted part beyond n, and
no slot still being written) publishes ``assembly.bin`` itself, after writing the last part into
its slot if it had its own file and truncating the file to the object's size: no copy of the
object. Any other list of parts is concatenated (``copy_file_range``, in the kernel) into a new
file from wherever each part is.

Errors: NoSuchUpload (unknown id, or one of another bucket/key), InvalidPart, InvalidPartOrder,
EntityTooSmall, MalformedXML (empty part list), InvalidArgument (part number out of 1..10000).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cloudtuner.storage import checksums, diskio, errors, layout
from cloudtuner.storage.layout import ObjectAttributes, ObjectInfo

MAX_PART_NUMBER = 10_000
_UPLOAD_ID_RE = re.compile(r"^[0-9a-f]{32}$")
ASSEMBLY = "assembly.bin"
STRIDE = "stride.json"

PartVerifier = Callable[[Mapping[str, bytes]], Mapping[str, str]]
Publisher = Callable[[diskio.TempFile, ObjectInfo], ObjectInfo]


@dataclass(frozen=True)
class PartInfo:
    """An uploaded part. ``etag`` is the unquoted MD5 hex of its data."""

    part_number: int
    etag: str
    size: int
    last_modified: datetime
    checksums: Mapping[str, str] = field(default_factory=dict)
    offset: int | None = None
    """Where the part's bytes start in ``assembly.bin``; None when they are in ``NNNNN.part``."""


@dataclass(frozen=True)
class CompletedPart:
    """One entry of a CompleteMultipartUpload request (``etag`` unquoted; checksums base64)."""

    part_number: int
    etag: str
    checksums: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class UploadInfo:
    """A multipart upload in progress."""

    upload_id: str
    bucket: str
    key: str
    initiated: datetime
    attributes: ObjectAttributes
    checksum_algorithm: str | None = None


@dataclass
class PartsPage:
    """One page of ListParts."""

    upload: UploadInfo
    parts: list[PartInfo]
    is_truncated: bool
    next_marker: int | None


class MultipartUploads:
    """The multipart uploads of one :class:`~cloudtuner.storage.objects.FilesystemObjectStore`."""

    def __init__(
        self,
        store_layout: layout.StoreLayout,
        *,
        require_bucket: Callable[[str], Path],
        publish: Publisher,
        min_part_size: int,
        fsync: bool,
    ) -> None:
        """Wire the uploads to the store's layout, bucket check and publishing step."""
        self._layout = store_layout
        self._require_bucket = require_bucket
        self._publish = publish
        self._min_part_size = min_part_size
        self._fsync = fsync

    def _folder(self, upload_id: str) -> Path:
        if not _UPLOAD_ID_RE.match(upload_id):
            raise errors.NoSuchUpload(UploadId=upload_id)
        return self._layout.uploads / upload_id

    def _load(self, bucket: str, key: str, upload_id: str, folder: Path | None = None) -> UploadInfo:
        record = layout.read_json((folder or self._folder(upload_id)) / "upload.json")
        if record is None or record.get("bucket") != bucket or record.get("key") != key:
            raise errors.NoSuchUpload(UploadId=upload_id)
        return UploadInfo(
            upload_id=upload_id,
            bucket=bucket,
            key=key,
            initiated=datetime.fromtimestamp(float(record.get("initiated", 0)), tz=UTC),
            attributes=ObjectAttributes(
                content_type=record.get("content_type"),
                metadata=dict(record.get("metadata") or {}),
                headers=dict(record.get("headers") or {}),
            ),
            checksum_algorithm=record.get("checksum_algorithm"),
        )

    async def create(
        self,
        bucket: str,
        key: str,
        attributes: ObjectAttributes | None = None,
        checksum_algorithm: str | None = None,
    ) -> UploadInfo:
        """Start an upload of ``key`` in ``bucket``; raise NoSuchBucket or an invalid-key error."""
        return await asyncio.to_thread(self._create, bucket, key, attributes or ObjectAttributes(), checksum_algorithm)

    def _create(
        self, bucket: str, key: str, attributes: ObjectAttributes, checksum_algorithm: str | None
    ) -> UploadInfo:
        self._require_bucket(bucket)
        self._layout.object_path(bucket, key)
        upload_id = uuid.uuid4().hex
        folder = self._layout.uploads / upload_id
        folder.mkdir()
        now = time.time()
        document: dict[str, Any] = {
            "bucket": bucket,
            "key": key,
            "initiated": now,
            "content_type": attributes.content_type,
            "metadata": dict(attributes.metadata),
            "headers": dict(attributes.headers),
            "checksum_algorithm": checksum_algorithm,
        }
        layout.write_json_atomic(folder / "upload.json", document, self._layout.tmp)
        return UploadInfo(upload_id, bucket, key, datetime.fromtimestamp(now, tz=UTC), attributes, checksum_algorithm)

    async def upload_part(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        part_number: int,
        body: AsyncIterator[bytes],
        *,
        algorithms: Iterable[str] = (),
        verify: PartVerifier | None = None,
        declared_size: int | None = None,
    ) -> PartInfo:
        """Stream ``body`` into part ``part_number`` (replacing an earlier one with that number).

        ``declared_size`` is the body's length as the request declares it: with it, the part can
        go straight to its slot of the object being assembled (see the module docstring). Raise
        InvalidArgument for a part number outside 1..10000, NoSuchUpload, IncompleteBody, or what
        ``verify`` raises; on any error the part is not recorded.
        """
        if not 1 <= part_number <= MAX_PART_NUMBER:
            raise errors.InvalidArgument(
                "Part number must be an integer between 1 and 10000, inclusive.",
                ArgumentName="partNumber",
                ArgumentValue=str(part_number),
            )
        folder = self._folder(upload_id)
        await asyncio.to_thread(self._load, bucket, key, upload_id)
        slot = await asyncio.to_thread(self._claim_slot, folder, upload_id, part_number, declared_size)
        if slot is not None:
            return await self._upload_to_slot(folder, upload_id, part_number, body, slot, algorithms, verify)
        sink = await asyncio.to_thread(diskio.TempFile, self._layout.tmp, {"md5", *algorithms}, "part-")
        try:
            await diskio.pump(body, sink)
            digests = sink.digests.digests()
            recorded = dict(verify(digests)) if verify is not None else {}
            return await asyncio.to_thread(
                self._store_part, folder, upload_id, part_number, sink, digests["md5"].hex(), recorded
            )
        except BaseException:
            await diskio.discard(sink)
            raise

    def _stride(self, folder: Path, declared: int) -> int | None:
        """Return the upload's stride, fixing it to ``declared`` if none is set yet."""
        path = folder / STRIDE
        record = layout.read_json(path)
        if record is None:
            tmp = folder / f"stride-{uuid.uuid4().hex[:8]}.tmp"
            try:
                tmp.write_text(f'{{"stride": {declared}}}')
                os.link(tmp, path)
            except FileExistsError:
                pass
            except FileNotFoundError:
                return None  # completed or aborted meanwhile
            finally:
                tmp.unlink(missing_ok=True)
            record = layout.read_json(path)
        stride = record.get("stride") if record else None
        return stride if isinstance(stride, int) else None

    def _claim_slot(
        self, folder: Path, upload_id: str, part_number: int, declared: int | None
    ) -> tuple[int, int] | None:
        """Return ``(offset, size)`` of the part's slot in ``assembly.bin`` if this writer may use it."""
        if declared is None or declared < max(self._min_part_size, 1):
            return None
        if self._stride(folder, declared) != declared:
            return None
        try:
            os.close(os.open(folder / f"{part_number:05d}.slot", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            return None
        except FileNotFoundError:
            raise errors.NoSuchUpload(UploadId=upload_id) from None
        return (part_number - 1) * declared, declared

    async def _upload_to_slot(
        self,
        folder: Path,
        upload_id: str,
        part_number: int,
        body: AsyncIterator[bytes],
        slot: tuple[int, int],
        algorithms: Iterable[str],
        verify: PartVerifier | None,
    ) -> PartInfo:
        offset, size = slot
        marker = folder / f"{part_number:05d}.slot"
        writer: diskio.SlotWriter | None = None
        try:
            try:
                writer = await asyncio.to_thread(
                    diskio.SlotWriter, folder / ASSEMBLY, offset, size, {"md5", *algorithms}
                )
            except FileNotFoundError:
                raise errors.NoSuchUpload(UploadId=upload_id) from None
            await diskio.pump(body, writer)
            if writer.size != size:
                raise errors.IncompleteBody()
            digests = writer.digests.digests()
            recorded = dict(verify(digests)) if verify is not None else {}
            await asyncio.to_thread(writer.finish, self._fsync)
            etag = digests["md5"].hex()
            record = {"etag": etag, "size": size, "checksums": recorded, "offset": offset}
            try:
                await asyncio.to_thread(
                    layout.write_json_atomic, folder / f"{part_number:05d}.json", record, self._layout.tmp
                )
            except FileNotFoundError:
                raise errors.NoSuchUpload(UploadId=upload_id) from None
            return PartInfo(part_number, etag, size, datetime.now(UTC), recorded, offset)
        except BaseException:
            if writer is not None:
                await diskio.discard(writer)
            await asyncio.to_thread(marker.unlink, missing_ok=True)
            raise

    def _store_part(
        self,
        folder: Path,
        upload_id: str,
        part_number: int,
        sink: diskio.TempFile,
        etag: str,
        part_checksums: dict[str, str],
    ) -> PartInfo:
        stat = sink.finish(self._fsync)
        data_path = folder / f"{part_number:05d}.part"
        try:
            os.replace(sink.path, data_path)
        except FileNotFoundError:
            raise errors.NoSuchUpload(UploadId=upload_id) from None
        record = {
            "etag": etag,
            "size": stat.st_size,
            "ino": stat.st_ino,
            "mtime_ns": stat.st_mtime_ns,
            "checksums": part_checksums,
        }
        try:
            layout.write_json_atomic(folder / f"{part_number:05d}.json", record, self._layout.tmp)
        except FileNotFoundError:
            raise errors.NoSuchUpload(UploadId=upload_id) from None
        return PartInfo(
            part_number, etag, stat.st_size, datetime.fromtimestamp(stat.st_mtime_ns / 1e9, tz=UTC), part_checksums
        )

    def _parts(self, folder: Path) -> dict[int, PartInfo]:
        parts: dict[int, PartInfo] = {}
        try:
            names = os.listdir(folder)
        except FileNotFoundError:
            return parts
        for name in names:
            if not name.endswith(".json") or not name[:-5].isdigit():
                continue
            number = int(name[:-5])
            record = layout.read_json(folder / name)
            if record is not None and isinstance(record.get("offset"), int):
                parts[number] = PartInfo(
                    number,
                    str(record["etag"]),
                    int(record["size"]),
                    datetime.fromtimestamp((folder / name).stat().st_mtime, tz=UTC),
                    {str(k): str(v) for k, v in (record.get("checksums") or {}).items()},
                    int(record["offset"]),
                )
                continue
            try:
                stat = (folder / f"{number:05d}.part").stat()
            except FileNotFoundError:
                continue
            if record is None or record.get("ino") != stat.st_ino or record.get("size") != stat.st_size:
                continue  # the part is being replaced right now; its record is not written yet
            parts[number] = PartInfo(
                number,
                str(record["etag"]),
                stat.st_size,
                datetime.fromtimestamp(stat.st_mtime_ns / 1e9, tz=UTC),
                {str(k): str(v) for k, v in (record.get("checksums") or {}).items()},
            )
        return parts

    async def list_parts(
        self, bucket: str, key: str, upload_id: str, *, max_parts: int = 1000, marker: int = 0
    ) -> PartsPage:
        """Return the parts after part number ``marker``, at most ``max_parts``; raise NoSuchUpload."""
        return await asyncio.to_thread(self._list_parts, bucket, key, upload_id, max_parts, marker)

    def _list_parts(self, bucket: str, key: str, upload_id: str, max_parts: int, marker: int) -> PartsPage:
        upload = self._load(bucket, key, upload_id)
        parts = sorted(
            (p for n, p in self._parts(self._folder(upload_id)).items() if n > marker), key=lambda p: p.part_number
        )
        page = parts[: max(max_parts, 0)]
        truncated = len(parts) > len(page)
        return PartsPage(upload, page, truncated, page[-1].part_number if truncated and page else None)

    async def abort(self, bucket: str, key: str, upload_id: str) -> None:
        """Abort the upload and delete its parts; raise NoSuchUpload."""
        await asyncio.to_thread(self._abort, bucket, key, upload_id)

    def _abort(self, bucket: str, key: str, upload_id: str) -> None:
        self._load(bucket, key, upload_id)
        claimed = self._claim(upload_id, "aborting")
        shutil.rmtree(claimed, ignore_errors=True)

    def _claim(self, upload_id: str, purpose: str) -> Path:
        claimed = self._layout.uploads / f"{upload_id}.{purpose}-{uuid.uuid4().hex[:8]}"
        try:
            os.rename(self._folder(upload_id), claimed)
        except FileNotFoundError:
            raise errors.NoSuchUpload(UploadId=upload_id) from None
        return claimed

    async def complete(self, bucket: str, key: str, upload_id: str, parts: list[CompletedPart]) -> ObjectInfo:
        """Assemble ``parts`` (as listed by the client) into the object and publish it.

        Raise MalformedXML for an empty list, InvalidPartOrder, InvalidPart (missing part, wrong
        ETag or checksum), EntityTooSmall (a part but the last under the minimum size),
        NoSuchUpload. On error the upload stays as it was, so the client may retry.
        """
        return await asyncio.to_thread(self._complete, bucket, key, upload_id, parts)

    def _complete(self, bucket: str, key: str, upload_id: str, requested: list[CompletedPart]) -> ObjectInfo:
        upload = self._load(bucket, key, upload_id)
        chosen = self._check_parts(self._parts(self._folder(upload_id)), requested)
        self._require_bucket(bucket)
        claimed = self._claim(upload_id, "completing")
        sink: diskio.TempFile | None = None
        try:
            if self._assembled_in_place(claimed, chosen):
                sink = self._finish_assembly(claimed, chosen)
            else:
                sink = diskio.TempFile(self._layout.tmp, (), "complete-")
                for part in chosen:
                    if part.offset is not None:
                        sink.append_file(claimed / ASSEMBLY, part.size, part.offset)
                    else:
                        sink.append_file(claimed / f"{part.part_number:05d}.part", part.size)
            md5s = b"".join(bytes.fromhex(part.etag) for part in chosen)
            etag = f"{hashlib.md5(md5s, usedforsecurity=False).hexdigest()}-{len(chosen)}"
            info = ObjectInfo(
                bucket=bucket,
                key=key,
                size=sum(part.size for part in chosen),
                etag=etag,
                last_modified=datetime.now(UTC),
                content_type=upload.attributes.content_type or layout.DEFAULT_CONTENT_TYPE,
                metadata=dict(upload.attributes.metadata),
                headers=dict(upload.attributes.headers),
                checksums=_composite_checksums(upload.checksum_algorithm, chosen),
                parts_count=len(chosen),
            )
            published = self._publish(sink, info)
        except BaseException:
            if sink is not None:
                sink.discard()
            os.rename(claimed, self._layout.uploads / upload_id)
            raise
        shutil.rmtree(claimed, ignore_errors=True)
        return published

    def _assembled_in_place(self, claimed: Path, chosen: list[PartInfo]) -> bool:
        """Whether ``assembly.bin`` of a claimed upload can become the object without a copy."""
        count = len(chosen)
        if any(part.part_number != index for index, part in enumerate(chosen, start=1)):
            return False
        if any(part.offset is None for part in chosen[:-1]) or not (claimed / ASSEMBLY).exists():
            return False
        slotted = {number for number, part in self._parts(claimed).items() if part.offset is not None}
        if any(number > count for number in slotted):
            return False  # bytes another Complete with more parts could still need
        markers = {int(name[:5]) for name in os.listdir(claimed) if name.endswith(".slot") and name[:5].isdigit()}
        return markers <= slotted  # a slot still being written would land in the published object

    def _finish_assembly(self, claimed: Path, chosen: list[PartInfo]) -> diskio.TempFile:
        """Complete ``assembly.bin`` in place (the last part into its slot, then the exact size)."""
        assembly = claimed / ASSEMBLY
        last = chosen[-1]
        start = (last.part_number - 1) * chosen[0].size if len(chosen) > 1 else 0
        if last.offset is None or last.offset != start:
            with (claimed / f"{last.part_number:05d}.part").open("rb") as source, assembly.open("r+b") as target:
                copied = 0
                while copied < last.size:
                    done = os.copy_file_range(
                        source.fileno(), target.fileno(), last.size - copied, copied, start + copied
                    )
                    if done <= 0:
                        raise errors.InternalError(f"Part {last.part_number} is shorter than recorded.")
                    copied += done
        os.truncate(assembly, start + last.size)
        return diskio.TempFile.adopt(assembly)

    def _check_parts(self, stored: dict[int, PartInfo], requested: list[CompletedPart]) -> list[PartInfo]:
        if not requested:
            raise errors.MalformedXML("The CompleteMultipartUpload request lists no parts.")
        chosen: list[PartInfo] = []
        previous = 0
        for entry in requested:
            if entry.part_number <= previous:
                raise errors.InvalidPartOrder()
            previous = entry.part_number
            part = stored.get(entry.part_number)
            if part is None or part.etag != entry.etag.strip().strip('"').lower():
                raise errors.InvalidPart(PartNumber=str(entry.part_number), ETag=entry.etag)
            for algorithm, value in entry.checksums.items():
                if part.checksums.get(algorithm) not in (None, value):
                    raise errors.InvalidPart(
                        f"The {algorithm.upper()} checksum of part {entry.part_number} does not match.",
                        PartNumber=str(entry.part_number),
                    )
            chosen.append(part)
        for part in chosen[:-1]:
            if part.size < self._min_part_size:
                raise errors.EntityTooSmall(
                    ProposedSize=str(part.size),
                    MinSizeAllowed=str(self._min_part_size),
                    PartNumber=str(part.part_number),
                    ETag=part.etag,
                )
        return chosen

    def remove_stale(self, cutoff: float) -> int:
        """Remove uploads (and leftovers of interrupted completions) not touched since ``cutoff``."""
        removed = 0
        with os.scandir(self._layout.uploads) as scanner:
            for entry in scanner:
                if entry.is_dir(follow_symlinks=False) and _newest_mtime(Path(entry.path)) < cutoff:
                    shutil.rmtree(entry.path, ignore_errors=True)
                    removed += 1
        return removed


def _newest_mtime(folder: Path) -> float:
    newest = folder.stat().st_mtime
    with os.scandir(folder) as scanner:
        for entry in scanner:
            newest = max(newest, entry.stat(follow_symlinks=False).st_mtime)
    return newest


def _composite_checksums(algorithm: str | None, parts: list[PartInfo]) -> dict[str, str]:
    if algorithm is None or not all(algorithm in part.checksums for part in parts):
        return {}
    raw = [checksums.decode_checksum(algorithm, part.checksums[algorithm]) for part in parts]
    return {algorithm: checksums.composite_checksum(algorithm, raw)}
