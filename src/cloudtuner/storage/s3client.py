"""A small S3 client for what the server itself asks of a bucket: list a folder, read a file's
metadata, store a small file, delete a file. Requests are signed with SigV4 (header form, path-style URLs), using
the same canonical-request code that verifies the built-in endpoint's requests.

Errors: :class:`S3ClientError` with the S3 error code and HTTP status when the endpoint refused,
or ``code="Unreachable"`` when it could not be reached. The secret key is never logged or put in
an exception.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import quote, urlsplit
from xml.etree import ElementTree

import httpx

from cloudtuner.storage.messages import S3Headers
from cloudtuner.storage.sigv4 import (
    ALGORITHM,
    canonical_headers,
    canonical_query,
    canonical_request,
    canonical_uri,
    sign,
    signing_key,
    string_to_sign,
)

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


class S3ClientError(Exception):
    """An S3 request failed: ``code`` is S3's error code (or ``Unreachable``), ``status`` the HTTP status."""

    def __init__(self, message: str, *, code: str, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


@dataclass(frozen=True)
class ListedObject:
    """One object of a listing: its key, size, ETag (unquoted) and modification time."""

    key: str
    size: int
    etag: str | None
    last_modified: datetime


@dataclass(frozen=True)
class ObjectHead:
    """What HEAD says of an object; ``sha256`` (hex) only when it was stored with a SHA-256 checksum."""

    size: int
    etag: str | None
    content_type: str | None
    last_modified: datetime | None
    sha256: str | None = None


def aws_endpoint(region: str) -> str:
    """Return AWS S3's regional endpoint URL."""
    return f"https://s3.{region}.amazonaws.com"


@dataclass
class S3Client:
    """Signs and sends requests to one S3-compatible endpoint with one access key.

    ``endpoint_url`` None means AWS S3 in ``region``. Use as an async context manager, or call
    :meth:`aclose`.
    """

    endpoint_url: str | None
    access_key_id: str
    secret_access_key: str = field(repr=False)
    region: str = "us-east-1"
    timeout: float = 30.0
    transport: httpx.AsyncBaseTransport | None = None
    _http: httpx.AsyncClient | None = field(default=None, init=False, repr=False)

    @property
    def base_url(self) -> str:
        """The endpoint's URL, without a trailing slash."""
        return (self.endpoint_url or aws_endpoint(self.region)).rstrip("/")

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=self.timeout, transport=self.transport, trust_env=True)
        return self._http

    async def aclose(self) -> None:
        """Close the connection pool."""
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def __aenter__(self) -> S3Client:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    # --- signing ----------------------------------------------------------------------------------

    def signed_headers(
        self,
        method: str,
        path: str,
        query: str,
        *,
        now: datetime | None = None,
        extra: dict[str, str] | None = None,
        payload_sha256: str = EMPTY_SHA256,
    ) -> dict[str, str]:
        """Return the headers that sign a request (``path`` raw, below the endpoint).

        ``path`` is already URI-encoded; ``query`` is the raw query string; ``payload_sha256`` is the
        hex SHA-256 of the body (default: empty).
        """
        moment = (now or datetime.now(UTC)).astimezone(UTC)
        timestamp = moment.strftime("%Y%m%dT%H%M%SZ")
        date = timestamp[:8]
        parts = urlsplit(self.base_url)
        full_path = parts.path.rstrip("/") + path
        headers = {
            "host": parts.netloc,
            "x-amz-content-sha256": payload_sha256,
            "x-amz-date": timestamp,
            **{name.lower(): value for name, value in (extra or {}).items()},
        }
        names = sorted(headers)
        block = canonical_headers(S3Headers(headers.items()), names)
        canonical = canonical_request(
            method, canonical_uri(full_path), canonical_query(query), block, ";".join(names), payload_sha256
        )
        scope = f"{date}/{self.region}/s3/aws4_request"
        signature = sign(
            signing_key(self.secret_access_key, date, self.region), string_to_sign(timestamp, scope, canonical)
        )
        headers["authorization"] = (
            f"{ALGORITHM} Credential={self.access_key_id}/{scope}, SignedHeaders={';'.join(names)}, "
            f"Signature={signature}"
        )
        del headers["host"]
        return headers

    async def _send(
        self, method: str, path: str, query: str = "", extra: dict[str, str] | None = None, body: bytes = b""
    ) -> httpx.Response:
        digest = hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256
        headers = self.signed_headers(method, path, query, extra=extra, payload_sha256=digest)
        url = self.base_url + path + (f"?{query}" if query else "")
        try:
            response = await self._client().request(method, url, headers=headers, content=body or None)
        except httpx.HTTPError as exc:
            raise S3ClientError(
                f"Cannot reach the S3 endpoint {self.base_url}: {type(exc).__name__}.", code="Unreachable"
            ) from None
        if response.status_code >= 300:
            raise _error_of(response, self.base_url)
        return response

    # --- operations -------------------------------------------------------------------------------

    async def list_objects(self, bucket: str, prefix: str, *, max_objects: int = 10_000) -> list[ListedObject]:
        """Return every object whose key starts with ``prefix`` (ListObjectsV2, all pages), by key.

        Raises:
            S3ClientError: the endpoint refused (NoSuchBucket, AccessDenied, ...) or was unreachable.
        """
        found: list[ListedObject] = []
        token: str | None = None
        while len(found) < max_objects:
            params = [("list-type", "2"), ("prefix", prefix)]
            if token:
                params.append(("continuation-token", token))
            query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in params)
            response = await self._send("GET", f"/{quote(bucket, safe='')}", query)
            root = _parse_xml(response.content)
            for item in root.iter(f"{_NS}Contents"):
                found.append(
                    ListedObject(
                        key=_text(item, "Key") or "",
                        size=int(_text(item, "Size") or 0),
                        etag=(_text(item, "ETag") or "").strip('"') or None,
                        last_modified=_iso(_text(item, "LastModified")),
                    )
                )
            truncated = (_text(root, "IsTruncated") or "false").lower() == "true"
            token = _text(root, "NextContinuationToken")
            if not truncated or not token:
                break
        return found

    async def head_object(self, bucket: str, key: str) -> ObjectHead:
        """Return an object's metadata, with its SHA-256 when it was stored with that checksum.

        Raises:
            S3ClientError: no such object (``NoSuchKey``), refused, or unreachable.
        """
        path = f"/{quote(bucket, safe='')}/{quote(key, safe='/')}"
        response = await self._send("HEAD", path, extra={"x-amz-checksum-mode": "ENABLED"})
        checksum = response.headers.get("x-amz-checksum-sha256")
        sha256 = None
        if checksum and "-" not in checksum:
            try:
                sha256 = base64.b64decode(checksum, validate=True).hex()
            except ValueError:
                sha256 = None
        modified = response.headers.get("last-modified")
        return ObjectHead(
            size=int(response.headers.get("content-length") or 0),
            etag=(response.headers.get("etag") or "").strip('"') or None,
            content_type=response.headers.get("content-type"),
            last_modified=parsedate_to_datetime(modified) if modified else None,
            sha256=sha256 if sha256 and len(sha256) == 64 else None,
        )

    async def put_object(self, bucket: str, key: str, body: bytes, content_type: str | None = None) -> str | None:
        """Store a small object (one request, payload signed); return its ETag.

        Raises:
            S3ClientError: refused or unreachable.
        """
        extra = {"content-type": content_type} if content_type else None
        response = await self._send("PUT", f"/{quote(bucket, safe='')}/{quote(key, safe='/')}", extra=extra, body=body)
        return (response.headers.get("etag") or "").strip('"') or None

    async def delete_object(self, bucket: str, key: str) -> None:
        """Delete an object (no error if it is absent).

        Raises:
            S3ClientError: refused or unreachable.
        """
        await self._send("DELETE", f"/{quote(bucket, safe='')}/{quote(key, safe='/')}")


def _parse_xml(body: bytes) -> ElementTree.Element:
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        raise S3ClientError("The S3 endpoint sent XML with a DTD, which is refused.", code="MalformedXML")
    try:
        return ElementTree.fromstring(body)  # noqa: S314 - DTDs refused above
    except ElementTree.ParseError:
        raise S3ClientError("The S3 endpoint's reply is not XML.", code="MalformedXML") from None


def _text(element: ElementTree.Element, name: str) -> str | None:
    found = element.find(f"{_NS}{name}")
    if found is None:
        found = element.find(name)
    return found.text if found is not None else None


def _iso(value: str | None) -> datetime:
    if not value:
        return datetime.now(UTC)
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return datetime.now(UTC)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _error_of(response: httpx.Response, endpoint: str) -> S3ClientError:
    code, message = f"Http{response.status_code}", f"The S3 endpoint {endpoint} answered {response.status_code}."
    if response.content and response.request.method != "HEAD":
        try:
            root = _parse_xml(response.content)
        except S3ClientError:
            root = None
        if root is not None:
            code = _text(root, "Code") or code
            message = f"The S3 endpoint {endpoint} refused: {code}: {_text(root, 'Message') or ''}".rstrip(": ")
    elif response.status_code == 404:
        code = "NoSuchKey"
    return S3ClientError(message, code=code, status=response.status_code)
