"""What every S3 operation gets, and the helpers operations share to build replies.

An operation is ``async def op(ctx: OperationContext) -> S3Response``; it may raise any
:class:`~cloudtuner.storage.errors.S3Error`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime

from cloudtuner.storage import errors
from cloudtuner.storage.credentials import S3Credential
from cloudtuner.storage.events import ObjectRemoved, ObjectWritten, StorageObserver
from cloudtuner.storage.layout import ObjectAttributes, ObjectInfo
from cloudtuner.storage.messages import S3Headers, S3Request, S3Response
from cloudtuner.storage.objects import FilesystemObjectStore
from cloudtuner.storage.sigv4 import VerifiedRequest

XML_CONTENT_TYPE = "application/xml"
MAX_USER_METADATA = 2 * 1024
_STORED_HEADERS = ("content-encoding", "content-disposition", "content-language", "cache-control", "expires")
OWNER_ID = "cloudtuner"

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class OperationContext:
    """One authenticated request, routed: its bucket and key (decoded, validated) and the store."""

    request: S3Request
    query: Mapping[str, str]
    bucket: str | None
    key: str | None
    verified: VerifiedRequest
    store: FilesystemObjectStore
    request_id: str
    observer: StorageObserver | None = None

    @property
    def headers(self) -> S3Headers:
        """The request headers."""
        return self.request.headers

    @property
    def credential(self) -> S3Credential:
        """The credential the request was signed with."""
        return self.verified.credential

    @property
    def bucket_name(self) -> str:
        """The bucket of a bucket or object operation."""
        assert self.bucket is not None
        return self.bucket

    @property
    def object_key(self) -> str:
        """The key of an object operation."""
        assert self.key is not None
        return self.key

    def require_key_access(self, bucket: str, key: str) -> None:
        """Raise AccessDenied unless the credential may use object ``key`` of ``bucket``."""
        if not self.credential.allows_key(bucket, key):
            raise errors.AccessDenied(f"This access key may not use {bucket}/{key}.")

    def tracks(self, bucket: str, key: str) -> bool:
        """Return whether the observer wants to hear about writes of ``key`` (see ``storage.events``)."""
        return self.observer is not None and self.observer.tracks(bucket, key)

    async def notify_written(self, info: ObjectInfo, sha256: bytes | None = None) -> None:
        """Tell the observer that ``info`` was published, if it tracks the key; never raises for it."""
        if self.observer is None or not self.observer.tracks(info.bucket, info.key):
            return
        try:
            await self.observer.object_written(ObjectWritten(self.credential, info, sha256.hex() if sha256 else None))
        except Exception:
            logger.exception("S3 %s/%s was stored, but recording it failed", info.bucket, info.key)

    async def notify_removed(self, bucket: str, key: str) -> None:
        """Tell the observer that ``key`` was deleted, if it tracks it; never raises for it."""
        if self.observer is None or not self.observer.tracks(bucket, key):
            return
        try:
            await self.observer.object_removed(ObjectRemoved(self.credential, bucket, key))
        except Exception:
            logger.exception("S3 %s/%s was deleted, but recording it failed", bucket, key)


def xml_response(body: bytes, status: int = 200, headers: list[tuple[str, str]] | None = None) -> S3Response:
    """Return an XML reply with its content type and length."""
    return S3Response(
        status,
        [("Content-Type", XML_CONTENT_TYPE), ("Content-Length", str(len(body))), *(headers or [])],
        body,
    )


def empty_response(status: int = 200, headers: list[tuple[str, str]] | None = None) -> S3Response:
    """Return a reply without a body."""
    return S3Response(status, [*(headers or []), ("Content-Length", "0")], b"")


def quote_etag(etag: str) -> str:
    """Return ``etag`` in quotes, as S3 sends it."""
    return f'"{etag}"'


def http_date(moment: datetime) -> str:
    """Format ``moment`` as an HTTP date (``Wed, 31 Jan 2024 12:00:00 GMT``)."""
    return format_datetime(moment.astimezone(UTC).replace(microsecond=0), usegmt=True)


def attributes_from_headers(headers: S3Headers) -> ObjectAttributes:
    """Return what a write request sets on the object; raise MetadataTooLarge past 2 KiB of metadata."""
    metadata: dict[str, str] = {}
    stored: dict[str, str] = {}
    for name, value in headers.items():
        lname = name.lower()
        if lname.startswith("x-amz-meta-"):
            metadata[lname[len("x-amz-meta-") :]] = value
        elif lname in _STORED_HEADERS:
            stored[lname] = value
    if sum(len(k) + len(v) for k, v in metadata.items()) > MAX_USER_METADATA:
        raise errors.MetadataTooLarge()
    encoding = stored.get("content-encoding")
    if encoding is not None:
        kept = [part.strip() for part in encoding.split(",") if part.strip() and part.strip() != "aws-chunked"]
        if kept:
            stored["content-encoding"] = ", ".join(kept)
        else:
            del stored["content-encoding"]
    return ObjectAttributes(content_type=headers.get("content-type"), metadata=metadata, headers=stored)


def object_headers(info: ObjectInfo) -> list[tuple[str, str]]:
    """Return the headers describing ``info`` in GET and HEAD replies (without Content-Length)."""
    headers = [
        ("Content-Type", info.content_type),
        ("ETag", quote_etag(info.etag)),
        ("Last-Modified", http_date(info.last_modified)),
        ("Accept-Ranges", "bytes"),
    ]
    for name, value in info.headers.items():
        headers.append((name.title(), value))
    for name, value in info.metadata.items():
        headers.append((f"x-amz-meta-{name}", value))
    return headers


def _parse_http_date(value: str) -> datetime | None:
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _etag_matches(header: str, etag: str) -> bool:
    candidates = [c.strip().removeprefix("W/").strip('"') for c in header.split(",")]
    return "*" in candidates or etag in candidates


def evaluate_preconditions(headers: S3Headers, info: ObjectInfo, prefix: str = "if-") -> bool:
    """Check the conditional headers (``If-Match`` etc.; ``prefix`` selects the copy-source ones).

    Return True when the reply must be 304 Not Modified; raise PreconditionFailed (412) when a
    condition fails. Dates compare at one-second precision, as HTTP dates have.
    """
    modified = info.last_modified.replace(microsecond=0)
    if_match = headers.get(prefix + "match")
    if if_match is not None and not _etag_matches(if_match, info.etag):
        raise errors.PreconditionFailed(Condition="If-Match")
    if if_match is None:
        since = headers.get(prefix + "unmodified-since")
        moment = _parse_http_date(since) if since else None
        if moment is not None and modified > moment:
            raise errors.PreconditionFailed(Condition="If-Unmodified-Since")
    if_none_match = headers.get(prefix + "none-match")
    if if_none_match is not None and _etag_matches(if_none_match, info.etag):
        return True
    if if_none_match is None:
        since = headers.get(prefix + "modified-since")
        moment = _parse_http_date(since) if since else None
        if moment is not None and modified <= moment:
            return True
    return False
