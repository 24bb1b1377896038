"""Where the object store keeps what on disk, and the metadata it records per object.

Under the store's root (the server passes ``<data dir>/cloud_outputs/``)::

    <bucket>/<key>                      object data: a bucket is a folder, a key a file below it
    .cloudtuner-s3/tmp/                 uploads in progress (renamed into place when complete)
    .cloudtuner-s3/meta/<bucket>/ab/<sha256 of key>.json   metadata sidecar of one object
    .cloudtuner-s3/uploads/<upload id>/ multipart uploads in progress

``.cloudtuner-s3`` can never be a bucket (bucket names start with a letter or digit) and sidecars
live outside the buckets, named by a hash of the key, so they can collide neither with object keys
nor with each other. A sidecar records the inode, size and modification time of the data file it
describes; when they no longer match (the file was replaced behind the store's back, or two
concurrent uploads of one key crossed), the metadata is derived from the file itself instead.
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cloudtuner.storage import keys

INTERNAL_DIR = ".cloudtuner-s3"
DEFAULT_CONTENT_TYPE = "binary/octet-stream"
_SIDECAR_VERSION = 1


@dataclass(frozen=True)
class ObjectAttributes:
    """What a client sets on an object when it writes it.

    ``headers`` holds the stored representation headers, lower-case: ``content-encoding``,
    ``content-disposition``, ``content-language``, ``cache-control``, ``expires``. ``metadata`` holds
    user metadata without the ``x-amz-meta-`` prefix.
    """

    content_type: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ObjectInfo:
    """An object's metadata. ``etag`` is unquoted; ``checksums`` maps algorithm to base64 value."""

    bucket: str
    key: str
    size: int
    etag: str
    last_modified: datetime
    content_type: str
    metadata: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    checksums: Mapping[str, str] = field(default_factory=dict)
    parts_count: int | None = None


class StoreLayout:
    """Paths of the store below ``root``; creates the internal folders on construction."""

    def __init__(self, root: Path) -> None:
        """Use ``root`` (created if missing) and make sure the internal folders exist."""
        self.root = root
        self.internal = root / INTERNAL_DIR
        self.tmp = self.internal / "tmp"
        self.meta = self.internal / "meta"
        self.uploads = self.internal / "uploads"
        for folder in (self.root, self.tmp, self.meta, self.uploads):
            folder.mkdir(parents=True, exist_ok=True)

    def bucket_dir(self, bucket: str) -> Path:
        """Return the folder of ``bucket`` (which must be a valid bucket name)."""
        return self.root / keys.validate_bucket_name(bucket)

    def object_path(self, bucket: str, key: str) -> Path:
        """Return the data file of ``key``; raise InvalidObjectKey if it would resolve outside."""
        return keys.path_under(self.bucket_dir(bucket), keys.validate_key(key))

    def sidecar_path(self, bucket: str, key: str) -> Path:
        """Return the metadata sidecar of ``key`` in ``bucket``."""
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
        return self.meta / bucket / digest[:2] / f"{digest}.json"


def write_json_atomic(path: Path, document: Mapping[str, Any], tmp_dir: Path) -> None:
    """Write ``document`` as JSON to ``path`` atomically (temp file in ``tmp_dir``, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=tmp_dir, prefix="json-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(document, handle, separators=(",", ":"))
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def read_json(path: Path) -> dict[str, Any] | None:
    """Return the JSON object stored at ``path``, or None if it is missing or unreadable."""
    try:
        with path.open("r", encoding="utf-8") as handle:
            document = json.load(handle)
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) else None


def sidecar_document(info: ObjectInfo, stat: os.stat_result) -> dict[str, Any]:
    """Return the sidecar JSON of ``info`` for the data file whose ``stat`` it describes."""
    return {
        "version": _SIDECAR_VERSION,
        "key": info.key,
        "etag": info.etag,
        "size": stat.st_size,
        "ino": stat.st_ino,
        "mtime_ns": stat.st_mtime_ns,
        "content_type": info.content_type,
        "metadata": dict(info.metadata),
        "headers": dict(info.headers),
        "checksums": dict(info.checksums),
        "parts_count": info.parts_count,
    }


def info_from_stat(bucket: str, key: str, stat: os.stat_result, sidecar: Mapping[str, Any] | None) -> ObjectInfo:
    """Build the :class:`ObjectInfo` of a data file from its ``stat`` and (if it matches) sidecar."""
    modified = datetime.fromtimestamp(stat.st_mtime_ns / 1e9, tz=UTC)
    if (
        sidecar is not None
        and sidecar.get("key") == key
        and sidecar.get("size") == stat.st_size
        and sidecar.get("ino") == stat.st_ino
        and sidecar.get("mtime_ns") == stat.st_mtime_ns
    ):
        return ObjectInfo(
            bucket=bucket,
            key=key,
            size=stat.st_size,
            etag=str(sidecar["etag"]),
            last_modified=modified,
            content_type=str(sidecar.get("content_type") or DEFAULT_CONTENT_TYPE),
            metadata=_str_map(sidecar.get("metadata")),
            headers=_str_map(sidecar.get("headers")),
            checksums=_str_map(sidecar.get("checksums")),
            parts_count=sidecar.get("parts_count") if isinstance(sidecar.get("parts_count"), int) else None,
        )
    # A file the store did not write (or a stale sidecar): an ETag that cannot pass for an MD5, so
    # that clients do not compare it with their own MD5 of the data.
    fingerprint = f"{stat.st_ino}:{stat.st_size}:{stat.st_mtime_ns}".encode()
    return ObjectInfo(
        bucket=bucket,
        key=key,
        size=stat.st_size,
        etag=hashlib.md5(fingerprint, usedforsecurity=False).hexdigest() + "-1",
        last_modified=modified,
        content_type=mimetypes.guess_type(key)[0] or DEFAULT_CONTENT_TYPE,
    )


def _str_map(value: object) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {str(k): str(v) for k, v in value.items()}


def prune_empty_dirs(start: Path, stop: Path) -> None:
    """Remove ``start`` and its parents while they are empty, up to (not including) ``stop``."""
    current = start
    while current != stop and stop in current.parents:
        try:
            current.rmdir()
        except OSError:
            return
        current = current.parent
