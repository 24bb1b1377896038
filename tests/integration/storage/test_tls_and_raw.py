"""What clients send in other setups: boto3 over TLS (aws-chunked bodies with trailing checksums,
as behind an HTTPS reverse proxy), signed aws-chunked bodies, and byte-exact hostile paths."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import socket
import subprocess
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from cloudtuner.storage import S3Handler, S3Request, S3Response
from tests.integration.storage.asgi_app import make_app, start_server
from tests.integration.storage.conftest import ADMIN_KEY, ADMIN_SECRET, S3Endpoint, make_client, make_credentials
from tests.integration.storage.raw import aws_chunked_signed, send, signed
from tests.support.waiting import wait_until_sync

MIB = 1024 * 1024


class RecordingHandler:
    """Wraps the handler and records the payload mode of every request."""

    def __init__(self, handler: S3Handler) -> None:
        self.handler = handler
        self.modes: list[tuple[str, str | None, str | None]] = []

    async def handle(self, request: S3Request) -> S3Response:
        headers = request.headers
        self.modes.append((request.method, headers.get("x-amz-content-sha256"), headers.get("x-amz-trailer")))
        return await self.handler.handle(request)


def _self_signed_certificate(folder: Path) -> tuple[str, str]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    return str(cert), str(key)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, RecordingHandler, Path]]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = _self_signed_certificate(folder)
    from cloudtuner.storage import FilesystemObjectStore

    root = folder / "cloud_outputs"
    recorder = RecordingHandler(S3Handler(FilesystemObjectStore(root), make_credentials()))
    server = start_server(make_app(recorder), ssl_certfile=cert, ssl_keyfile=key)  # type: ignore[arg-type]
    client = make_client(server.endpoint, ADMIN_KEY, ADMIN_SECRET, verify=cert)
    try:
        client.create_bucket(Bucket="tls-bucket")
        yield client, recorder, root
    finally:
        client.close()
        server.stop()


def test_boto3_over_tls_sends_trailing_checksums(tls: tuple[Any, RecordingHandler, Path], tmp_path: Path) -> None:
    client, recorder, root = tls
    recorder.modes.clear()
    client.put_object(Bucket="tls-bucket", Key="small.txt", Body=b"over tls" * 1000)
    assert ("PUT", "STREAMING-UNSIGNED-PAYLOAD-TRAILER", "x-amz-checksum-crc32") in recorder.modes
    assert client.get_object(Bucket="tls-bucket", Key="small.txt")["Body"].read() == b"over tls" * 1000

    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(12 * MIB))
    config = TransferConfig(multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB)
    client.upload_file(str(source), "tls-bucket", "big.bin", Config=config)
    assert (root / "tls-bucket" / "big.bin").read_bytes() == source.read_bytes()
    uploads = [mode for mode in recorder.modes if mode[0] == "PUT" and mode[1] != "UNSIGNED-PAYLOAD"]
    assert all(mode[1] == "STREAMING-UNSIGNED-PAYLOAD-TRAILER" for mode in uploads)


# --- raw requests, signed by botocore, sent byte-exact ---------------------------------------------


def _put_raw(s3: S3Endpoint, path: str, body: bytes = b"raw") -> tuple[int, bytes]:
    url = f"{s3.url}{path}"
    headers, _ = signed(url, "PUT", key=ADMIN_KEY, secret=ADMIN_SECRET, body=body)
    response = send(url, "PUT", headers, body)
    return response.status, response.body


@pytest.mark.parametrize(
    "raw_key",
    ["%2e%2e/%2e%2e/x", "..%2f..%2fx", "%2E%2E%2Fx", "a/%2e%2e/%2e%2e/%2e%2e/x", "%252e%252e%252fx",
     "..%5cx", "x%00y", "%2fetc%2fpasswd", "a/../../x", "./x"],
)  # fmt: skip
def test_encoded_traversal_paths(s3: S3Endpoint, bucket: str, raw_key: str) -> None:
    status, body = _put_raw(s3, f"/{bucket}/{raw_key}")
    assert status == 400, body
    assert b"<Code>InvalidArgument</Code>" in body
    escaped = [p for p in s3.root.parent.rglob("*") if p.is_file() and p.read_bytes() == b"raw"]
    assert escaped == []


@pytest.mark.parametrize("raw_bucket", ["%2e%2e", "..", ".cloudtuner-s3", "a%2fb"])
def test_hostile_bucket_names(s3: S3Endpoint, raw_bucket: str) -> None:
    status, body = _put_raw(s3, f"/{raw_bucket}/key")
    assert status == 400, body
    assert b"<Code>InvalidBucketName</Code>" in body


def test_signed_aws_chunked_upload(s3: S3Endpoint, bucket: str) -> None:
    chunks = [b"a" * 65536, b"b" * 1000, b"c" * 17]
    data = b"".join(chunks)
    url = f"{s3.url}/{bucket}/chunked.bin"
    base = {
        "Content-Encoding": "aws-chunked",
        "x-amz-decoded-content-length": str(len(data)),
    }
    headers, seed = signed(
        url, "PUT", key=ADMIN_KEY, secret=ADMIN_SECRET, headers=base,
        payload_hash="STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
    )  # fmt: skip
    body = aws_chunked_signed(chunks, secret=ADMIN_SECRET, timestamp=headers["X-Amz-Date"], seed=seed)
    response = send(url, "PUT", headers, [body[:40000], body[40000:]])
    assert response.status == 200, response.body
    assert response.headers["etag"] == f'"{hashlib.md5(data).hexdigest()}"'
    assert (s3.root / bucket / "chunked.bin").read_bytes() == data

    # The same body under another seed signature: refused, and nothing is stored.
    bad = aws_chunked_signed(chunks, secret=ADMIN_SECRET, timestamp=headers["X-Amz-Date"], seed="0" * 64)
    headers2, _ = signed(
        f"{s3.url}/{bucket}/chunked2.bin", "PUT", key=ADMIN_KEY, secret=ADMIN_SECRET, headers=base,
        payload_hash="STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
    )  # fmt: skip
    response = send(f"{s3.url}/{bucket}/chunked2.bin", "PUT", headers2, bad)
    assert response.status == 403
    assert b"<Code>SignatureDoesNotMatch</Code>" in response.body
    assert not (s3.root / bucket / "chunked2.bin").exists()


def test_signed_aws_chunked_upload_with_signed_trailer(s3: S3Endpoint, bucket: str) -> None:
    chunks = [b"t" * 9000, b"u" * 10]
    data = b"".join(chunks)
    crc = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    for name, value, expected in (("ok.bin", crc, 200), ("bad.bin", "AAAAAA==", 400)):
        url = f"{s3.url}/{bucket}/{name}"
        headers, seed = signed(
            url, "PUT", key=ADMIN_KEY, secret=ADMIN_SECRET,
            headers={"Content-Encoding": "aws-chunked", "x-amz-decoded-content-length": str(len(data)),
                     "x-amz-trailer": "x-amz-checksum-crc32"},
            payload_hash="STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
        )  # fmt: skip
        body = aws_chunked_signed(
            chunks, secret=ADMIN_SECRET, timestamp=headers["X-Amz-Date"], seed=seed,
            trailer={"x-amz-checksum-crc32": value},
        )  # fmt: skip
        response = send(url, "PUT", headers, body)
        assert response.status == expected, response.body
    assert (s3.root / bucket / "ok.bin").read_bytes() == data
    assert not (s3.root / bucket / "bad.bin").exists()


def test_unsigned_trailer_with_wrong_checksum_is_bad_digest(s3: S3Endpoint, bucket: str) -> None:
    data = b"payload with a wrong trailer"
    url = f"{s3.url}/{bucket}/trailer.bin"
    headers, _ = signed(
        url, "PUT", key=ADMIN_KEY, secret=ADMIN_SECRET,
        headers={"Content-Encoding": "aws-chunked", "x-amz-trailer": "x-amz-checksum-crc32",
                 "x-amz-decoded-content-length": str(len(data))},
        payload_hash="STREAMING-UNSIGNED-PAYLOAD-TRAILER",
    )  # fmt: skip
    body = b"%x\r\n%s\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n" % (len(data), data)
    response = send(url, "PUT", headers, body)
    assert response.status == 400
    assert b"<Code>BadDigest</Code>" in response.body
    assert not (s3.root / bucket / "trailer.bin").exists()


def test_payload_hash_mismatch(s3: S3Endpoint, bucket: str) -> None:
    url = f"{s3.url}/{bucket}/hashed.bin"
    headers, _ = signed(url, "PUT", key=ADMIN_KEY, secret=ADMIN_SECRET, body=b"signed body")
    response = send(url, "PUT", headers, b"other body!")
    assert response.status == 400
    assert b"<Code>XAmzContentSHA256Mismatch</Code>" in response.body
    assert not (s3.root / bucket / "hashed.bin").exists()


def test_error_before_reading_the_body_closes_the_connection(s3: S3Endpoint, bucket: str) -> None:
    url = f"{s3.url}/{bucket}/denied.bin"
    headers, _ = signed(url, "PUT", key=ADMIN_KEY, secret="wrong", body=b"x" * 100)
    response = send(url, "PUT", headers, b"x" * 100)
    assert response.status == 403
    assert response.headers.get("connection") == "close"


def test_wrong_secret_error_shows_the_canonical_request(s3: S3Endpoint, bucket: str) -> None:
    client = make_client(s3.url, ADMIN_KEY, "wrong")
    with pytest.raises(ClientError) as caught:
        client.list_objects_v2(Bucket=bucket, Prefix="a b")
    error: dict[str, str] = dict(caught.value.response["Error"])  # type: ignore[arg-type]
    assert error["Code"] == "SignatureDoesNotMatch"
    assert "prefix=a%20b" in error["CanonicalRequest"]


def test_client_disconnect_mid_upload_leaves_nothing(s3: S3Endpoint, bucket: str) -> None:
    url = f"{s3.url}/{bucket}/interrupted.bin"
    body = b"z" * (4 * MIB)
    headers, _ = signed(url, "PUT", key=ADMIN_KEY, secret=ADMIN_SECRET, body=body)
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=10) as sock:
        head = f"PUT {parts.path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        sock.sendall((head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body[: 2 * MIB])
        wait_until_sync(lambda: list((s3.root / ".cloudtuner-s3" / "tmp").iterdir()), bool, timeout=10)
    wait_until_sync(lambda: list((s3.root / ".cloudtuner-s3" / "tmp").iterdir()), lambda left: not left, timeout=10)
    assert not (s3.root / bucket / "interrupted.bin").exists()


def test_sigv2_client(s3: S3Endpoint, bucket: str) -> None:
    client = make_client(s3.url, ADMIN_KEY, ADMIN_SECRET, signature_version="s3")
    client.put_object(Bucket=bucket, Key="v2/a b.txt", Body=b"signed with v2", ContentType="text/plain")
    assert client.get_object(Bucket=bucket, Key="v2/a b.txt")["Body"].read() == b"signed with v2"
    assert [o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix="v2/")["Contents"]] == ["v2/a b.txt"]
    with pytest.raises(ClientError) as caught:
        make_client(s3.url, ADMIN_KEY, "wrong", signature_version="s3").get_object(Bucket=bucket, Key="v2/a b.txt")
    assert caught.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
