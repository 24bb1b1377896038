"""Hand-made requests to the endpoint: signed by botocore's own S3 signer, sent byte-exact with
http.client (so paths such as ``/b/%2e%2e/x`` reach the server exactly as written)."""

from __future__ import annotations

import hashlib
import hmac
import http.client
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials


@dataclass
class RawResponse:
    """Status, headers and body of a raw request."""

    status: int
    headers: dict[str, str]
    body: bytes


class FixedPayloadAuth(S3SigV4Auth):
    """botocore's S3 signer with a chosen ``x-amz-content-sha256`` value."""

    def __init__(self, credentials: Credentials, payload_hash: str) -> None:
        super().__init__(credentials, "s3", "us-east-1")
        self._payload_hash = payload_hash

    def payload(self, request: AWSRequest) -> str:
        return self._payload_hash


def send(url: str, method: str, headers: dict[str, str], body: bytes | Iterable[bytes] = b"") -> RawResponse:
    """Send a request to the full ``url`` as written (no normalization)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    try:
        connection.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        for name, value in headers.items():
            connection.putheader(name, value)
        if isinstance(body, bytes):
            if body or method in ("PUT", "POST"):
                connection.putheader("Content-Length", str(len(body)))
            connection.endheaders(body or None)
        else:
            connection.putheader("Transfer-Encoding", "chunked")
            connection.endheaders()
            for piece in body:
                if piece:
                    connection.send(b"%x\r\n%s\r\n" % (len(piece), piece))
            connection.send(b"0\r\n\r\n")
        response = connection.getresponse()
        return RawResponse(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        connection.close()


def signed(
    url: str,
    method: str,
    *,
    key: str,
    secret: str,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    payload_hash: str | None = None,
) -> tuple[dict[str, str], str]:
    """Sign a request for ``url`` with botocore; return its headers (Host included) and signature."""
    parts = urlsplit(url)
    request = AWSRequest(method=method, url=url, headers=dict(headers or {}), data=body)
    request.headers["Host"] = parts.netloc
    digest = payload_hash or hashlib.sha256(body).hexdigest()
    FixedPayloadAuth(Credentials(key, secret), digest).add_auth(request)
    signature = request.headers["Authorization"].rsplit("Signature=", 1)[1]
    return dict(request.headers.items()), signature


def signing_key(secret: str, date: str) -> bytes:
    """Derive the SigV4 key for us-east-1/s3 (independently of the code under test)."""
    key = hmac.new(f"AWS4{secret}".encode(), date.encode(), hashlib.sha256).digest()
    for part in ("us-east-1", "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def aws_chunked_signed(
    chunks: list[bytes], *, secret: str, timestamp: str, seed: str, trailer: dict[str, str] | None = None
) -> bytes:
    """Encode ``chunks`` as a signed aws-chunked body (STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER])."""
    key = signing_key(secret, timestamp[:8])
    scope = f"{timestamp[:8]}/us-east-1/s3/aws4_request"
    empty = hashlib.sha256(b"").hexdigest()
    previous = seed
    out = bytearray()
    for chunk in [*chunks, b""]:
        text = "\n".join(
            ["AWS4-HMAC-SHA256-PAYLOAD", timestamp, scope, previous, empty, hashlib.sha256(chunk).hexdigest()]
        )
        previous = hmac.new(key, text.encode(), hashlib.sha256).hexdigest()
        out += b"%x;chunk-signature=%s\r\n" % (len(chunk), previous.encode())
        if chunk:
            out += chunk + b"\r\n"
    if trailer is not None:
        canonical = "".join(f"{k}:{v}\n" for k, v in trailer.items())
        text = "\n".join(
            ["AWS4-HMAC-SHA256-TRAILER", timestamp, scope, previous, hashlib.sha256(canonical.encode()).hexdigest()]
        )
        trailer_signature = hmac.new(key, text.encode(), hashlib.sha256).hexdigest()
        for k, v in trailer.items():
            out += f"{k}:{v}\r\n".encode()
        out += f"x-amz-trailer-signature:{trailer_signature}\r\n".encode()
    out += b"\r\n"
    return bytes(out)
