"""What the S3 endpoint tells its owner about writes: an object was stored, or removed.

The handler takes an optional :class:`StorageObserver`. For every key the observer
:meth:`~StorageObserver.tracks`, the handler calls it once a write has succeeded (PutObject,
CopyObject, CompleteMultipartUpload) or an object was deleted (DeleteObject, DeleteObjects),
*before* the client gets its reply, so that a client which saw success can rely on the observer
having seen it too. A failing observer is logged and does not fail the request: the object is
stored either way, and the observer's owner must be able to catch up (the server lists a job's
prefix again when the job ends).

A tracked PutObject also computes the object's SHA-256 while streaming it to disk (one more digest
in the writer thread), so the observer gets it without reading the file again; writes of other
kinds leave ``sha256`` None and the observer reads the file itself if it needs the hash.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from cloudtuner.storage.credentials import S3Credential
from cloudtuner.storage.layout import ObjectInfo


@dataclass(frozen=True)
class ObjectWritten:
    """An object was published: its metadata, who wrote it, and its SHA-256 when known (hex)."""

    credential: S3Credential
    info: ObjectInfo
    sha256: str | None = None


@dataclass(frozen=True)
class ObjectRemoved:
    """An object was deleted (or was already absent) by a DeleteObject(s) request."""

    credential: S3Credential
    bucket: str
    key: str


class StorageObserver(Protocol):
    """Receives the writes of keys it tracks; see the module docstring for when it is called."""

    def tracks(self, bucket: str, key: str) -> bool:
        """Return whether writes of ``key`` in ``bucket`` are reported; cheap, called on every write."""
        ...

    async def object_written(self, event: ObjectWritten) -> None:
        """Handle a successful write; exceptions are logged by the handler."""
        ...

    async def object_removed(self, event: ObjectRemoved) -> None:
        """Handle a deletion; exceptions are logged by the handler."""
        ...
