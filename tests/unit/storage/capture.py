"""Requests exactly as boto3 would send them, signed by botocore in memory and never sent."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

import boto3
from botocore.awsrequest import AWSPreparedRequest
from botocore.config import Config

from cloudtuner.storage import S3Headers, S3Request

ENDPOINT = "http://storage.example:8001/api/cloud/storage"
MOUNT = "/api/cloud/storage"
KEY = "CTUNITKEY00000000001"
SECRET = "unit/secret+key=="
#: The time every captured request is signed at (naive UTC, as botocore uses it).
SIGNED_AT = datetime(2024, 5, 1, 12, 0, 0)
SIGNED_AT_UTC = SIGNED_AT.replace(tzinfo=UTC)


class FixedClock:
    """A clock stuck at one moment."""

    def __init__(self, moment: datetime = SIGNED_AT_UTC) -> None:
        self.moment = moment

    def now(self) -> datetime:
        return self.moment


class _Captured(Exception):
    def __init__(self, request: AWSPreparedRequest) -> None:
        super().__init__("captured")
        self.request = request


def client(endpoint: str = ENDPOINT, key: str = KEY, secret: str = SECRET, **config: Any) -> Any:
    """A boto3 S3 client (path-style, us-east-1) whose requests are captured instead of sent."""
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1, "mode": "standard"}, **config),
    )

    def before_send(request: AWSPreparedRequest, **_: Any) -> None:
        raise _Captured(request)

    s3.meta.events.register("before-send.s3", before_send)
    return s3


def capture(operation: str, s3: Any = None, **params: Any) -> AWSPreparedRequest:
    """Return the prepared request ``s3.<operation>(**params)`` would send, signed at SIGNED_AT."""
    s3 = s3 or client()
    with mock.patch("botocore.auth.get_current_datetime", return_value=SIGNED_AT):
        try:
            getattr(s3, operation)(**params)
        except _Captured as captured:
            return captured.request
    raise AssertionError("the request was not captured")


def presign(operation: str, s3: Any = None, expires: int = 3600, **params: Any) -> str:
    """Return a presigned URL made at SIGNED_AT."""
    s3 = s3 or client(signature_version="s3v4")
    with (
        mock.patch("botocore.auth.get_current_datetime", return_value=SIGNED_AT),
        mock.patch("botocore.auth.time.time", return_value=SIGNED_AT_UTC.timestamp()),
    ):
        return str(s3.generate_presigned_url(operation, Params=params, ExpiresIn=expires))


async def _body(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), 7000):
        yield data[start : start + 7000]


def body_bytes(prepared: AWSPreparedRequest) -> bytes:
    """The body of a prepared request as bytes."""
    body = prepared.body
    if body is None:
        return b""
    if isinstance(body, bytes | bytearray):
        return bytes(body)
    if isinstance(body, str):
        return body.encode()
    if hasattr(body, "seek"):
        body.seek(0)
    data = body.read()
    return data.encode() if isinstance(data, str) else bytes(data)


def to_request(prepared: AWSPreparedRequest, mount: str = MOUNT, host: str | None = None) -> S3Request:
    """Translate a prepared botocore request into what the route adapter would build."""
    parts = urlsplit(prepared.url)
    headers = [(k, v.decode() if isinstance(v, bytes) else str(v)) for k, v in prepared.headers.items()]
    headers.append(("Host", host or parts.netloc))
    assert parts.path.startswith(mount)
    return S3Request(
        method=prepared.method,
        path=parts.path[len(mount) :],
        query=parts.query,
        headers=S3Headers(headers),
        body=_body(body_bytes(prepared)),
        mount_path=mount,
    )


def url_request(url: str, method: str = "GET", mount: str = MOUNT, body: bytes = b"") -> S3Request:
    """Translate a presigned URL into the request a plain HTTP client would send."""
    parts = urlsplit(url)
    return S3Request(
        method=method,
        path=parts.path[len(mount) :],
        query=parts.query,
        headers=S3Headers([("Host", parts.netloc)]),
        body=_body(body),
        mount_path=mount,
    )


def stream(data: bytes, size: int = 7000) -> AsyncIterator[bytes]:
    """An async byte stream of ``data`` in pieces of ``size``."""

    async def pieces() -> AsyncIterator[bytes]:
        for start in range(0, len(data), size):
            yield data[start : start + size]

    return pieces()


def as_file(data: bytes) -> io.BytesIO:
    """A seekable body for botocore."""
    return io.BytesIO(data)
