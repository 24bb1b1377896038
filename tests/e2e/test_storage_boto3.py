"""The built-in S3 endpoint of a real `cloudtuner server`, driven by the real boto3 client.

Object traffic does not depend on the job store, so these run on the server's default SQLite
store; the credential tests (test_storage_credentials.py) run on PostgreSQL too.
"""

from __future__ import annotations

import hashlib
import io
import os
import urllib.request
from pathlib import Path

import httpx
import pytest
from boto3.s3.transfer import TransferConfig

from tests.e2e.harness import ServerProcess
from tests.e2e.storage_support import Key, create_admin_key, endpoint, error_code, s3_client
from tests.integration.storage.raw import send, signed
from tests.support.waiting import wait_until_sync

MIB = 1024 * 1024


@pytest.fixture
def admin(server: ServerProcess) -> Key:
    return create_admin_key(server, name="e2e admin")


def outputs(server: ServerProcess) -> Path:
    return server.data_dir / "cloud_outputs"


def test_single_put_get_head_delete(server: ServerProcess, admin: Key) -> None:
    s3 = s3_client(server, admin)
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["cloudtuner"]  # made at start
    body = b"safetensors bytes" * 1000
    put = s3.put_object(
        Bucket="cloudtuner", Key="models/flux/lora.safetensors", Body=body, ContentType="application/octet-stream",
        Metadata={"job": "abc"},
    )  # fmt: skip
    assert put["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
    assert (outputs(server) / "cloudtuner" / "models" / "flux" / "lora.safetensors").read_bytes() == body
    got = s3.get_object(Bucket="cloudtuner", Key="models/flux/lora.safetensors")
    assert got["Body"].read() == body
    assert got["Metadata"] == {"job": "abc"}
    head = s3.head_object(Bucket="cloudtuner", Key="models/flux/lora.safetensors")
    assert (head["ContentLength"], head["ContentType"]) == (len(body), "application/octet-stream")
    s3.delete_object(Bucket="cloudtuner", Key="models/flux/lora.safetensors")
    assert error_code(lambda: s3.get_object(Bucket="cloudtuner", Key="models/flux/lora.safetensors")) == (
        "NoSuchKey",
        404,
    )


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_multipart_upload_of_64_mib_in_8_mib_parts(server: ServerProcess, admin: Key) -> None:
    s3 = s3_client(server, admin)
    assert server.process is not None
    s3.put_object(Bucket="cloudtuner", Key="warm-up", Body=b"x")
    rss_before = _rss_kib(server.process.pid)
    data = os.urandom(64 * MIB)
    upload = s3.create_multipart_upload(Bucket="cloudtuner", Key="big/model.bin")
    parts = []
    for number in range(1, 9):
        piece = data[(number - 1) * 8 * MIB : number * 8 * MIB]
        reply = s3.upload_part(
            Bucket="cloudtuner", Key="big/model.bin", UploadId=upload["UploadId"], PartNumber=number, Body=piece
        )
        parts.append({"PartNumber": number, "ETag": reply["ETag"]})
    listed = s3.list_parts(Bucket="cloudtuner", Key="big/model.bin", UploadId=upload["UploadId"])
    assert [p["PartNumber"] for p in listed["Parts"]] == list(range(1, 9))
    assert all(p["Size"] == 8 * MIB for p in listed["Parts"])
    # Nothing is visible until the upload completes.
    assert error_code(lambda: s3.head_object(Bucket="cloudtuner", Key="big/model.bin"))[1] == 404
    done = s3.complete_multipart_upload(
        Bucket="cloudtuner", Key="big/model.bin", UploadId=upload["UploadId"], MultipartUpload={"Parts": parts}
    )
    assert done["ETag"].strip('"').endswith("-8")
    assert s3.head_object(Bucket="cloudtuner", Key="big/model.bin")["ContentLength"] == 64 * MIB
    assert list((outputs(server) / ".cloudtuner-s3" / "uploads").iterdir()) == []

    # Downloaded back with boto3's transfer manager: concurrent ranged GETs of 8 MiB.
    sink = io.BytesIO()
    s3.download_fileobj(
        "cloudtuner",
        "big/model.bin",
        sink,
        Config=TransferConfig(multipart_threshold=8 * MIB, multipart_chunksize=8 * MIB),
    )
    assert hashlib.sha256(sink.getvalue()).digest() == hashlib.sha256(data).digest()
    # The same through upload_fileobj (boto3 picks multipart itself), then the server's memory.
    s3.upload_fileobj(
        io.BytesIO(data), "cloudtuner", "big/again.bin",
        Config=TransferConfig(multipart_threshold=8 * MIB, multipart_chunksize=8 * MIB),
    )  # fmt: skip
    assert (outputs(server) / "cloudtuner" / "big" / "again.bin").stat().st_size == 64 * MIB
    grown = _rss_kib(server.process.pid) - rss_before
    assert grown < 32 * 1024, f"the server's memory grew by {grown} KiB for 64 MiB objects: did it hold them?"


def test_multipart_abort_leaves_nothing(server: ServerProcess, admin: Key) -> None:
    s3 = s3_client(server, admin)
    upload = s3.create_multipart_upload(Bucket="cloudtuner", Key="aborted.bin")
    s3.upload_part(Bucket="cloudtuner", Key="aborted.bin", UploadId=upload["UploadId"], PartNumber=1, Body=b"x" * MIB)
    s3.abort_multipart_upload(Bucket="cloudtuner", Key="aborted.bin", UploadId=upload["UploadId"])
    assert not (outputs(server) / "cloudtuner" / "aborted.bin").exists()
    assert list((outputs(server) / ".cloudtuner-s3" / "uploads").iterdir()) == []


def test_listing_with_prefixes_delimiter_and_pagination(server: ServerProcess, admin: Key) -> None:
    s3 = s3_client(server, admin)
    keys = ["docs/readme.md", "photos/2024/a.jpg", "photos/2024/b.jpg", "photos/2025/c.jpg", "top.txt"]
    keys += [f"many/k{i:03}" for i in range(23)]
    for key in keys:
        s3.put_object(Bucket="cloudtuner", Key=key, Body=key.encode())

    root = s3.list_objects_v2(Bucket="cloudtuner", Delimiter="/")
    assert [p["Prefix"] for p in root["CommonPrefixes"]] == ["docs/", "many/", "photos/"]
    assert [o["Key"] for o in root["Contents"]] == ["top.txt"]
    photos = s3.list_objects_v2(Bucket="cloudtuner", Prefix="photos/", Delimiter="/")
    assert [p["Prefix"] for p in photos["CommonPrefixes"]] == ["photos/2024/", "photos/2025/"]
    assert "Contents" not in photos
    deep = s3.list_objects_v2(Bucket="cloudtuner", Prefix="photos/2024/")
    assert [(o["Key"], o["Size"]) for o in deep["Contents"]] == [("photos/2024/a.jpg", 17), ("photos/2024/b.jpg", 17)]

    pages, token = [], None
    while True:
        extra: dict[str, str] = {"ContinuationToken": token} if token else {}
        page = s3.list_objects_v2(Bucket="cloudtuner", Prefix="many/", MaxKeys=10, **extra)
        pages.append([o["Key"] for o in page["Contents"]])
        if not page["IsTruncated"]:
            break
        token = page["NextContinuationToken"]
    assert [len(p) for p in pages] == [10, 10, 3]
    assert [key for page in pages for key in page] == [f"many/k{i:03}" for i in range(23)]
    paginated = s3.get_paginator("list_objects_v2").paginate(Bucket="cloudtuner", PaginationConfig={"PageSize": 4})
    assert sorted(o["Key"] for page in paginated for o in page.get("Contents", [])) == sorted(keys)
    after = s3.list_objects_v2(Bucket="cloudtuner", Prefix="many/", StartAfter="many/k020")
    assert [o["Key"] for o in after["Contents"]] == ["many/k021", "many/k022"]
    v1 = s3.list_objects(Bucket="cloudtuner", Prefix="many/", MaxKeys=5, Marker="many/k004")
    assert [o["Key"] for o in v1["Contents"]] == [f"many/k{i:03}" for i in range(5, 10)]
    assert v1["IsTruncated"] is True


def test_ranged_get(server: ServerProcess, admin: Key) -> None:
    s3 = s3_client(server, admin)
    body = bytes(range(256)) * 4
    s3.put_object(Bucket="cloudtuner", Key="ranged.bin", Body=body)
    first = s3.get_object(Bucket="cloudtuner", Key="ranged.bin", Range="bytes=0-9")
    assert first["Body"].read() == body[:10]
    assert first["ContentRange"] == f"bytes 0-9/{len(body)}"
    assert first["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert s3.get_object(Bucket="cloudtuner", Key="ranged.bin", Range="bytes=-5")["Body"].read() == body[-5:]
    assert s3.get_object(Bucket="cloudtuner", Key="ranged.bin", Range="bytes=1000-")["Body"].read() == body[1000:]
    assert error_code(lambda: s3.get_object(Bucket="cloudtuner", Key="ranged.bin", Range="bytes=5000-6000")) == (
        "InvalidRange",
        416,
    )


def test_presigned_urls_fetched_with_plain_http(server: ServerProcess, admin: Key) -> None:
    s3 = s3_client(server, admin)
    s3.put_object(Bucket="cloudtuner", Key="shared/report.txt", Body=b"for a browser")
    params = {"Bucket": "cloudtuner", "Key": "shared/report.txt"}
    default = s3.generate_presigned_url("get_object", Params=params, ExpiresIn=300)
    v4 = s3_client(server, admin, signature_version="s3v4").generate_presigned_url(
        "get_object", Params=params, ExpiresIn=300
    )
    assert "X-Amz-Signature=" in v4
    for url in (default, v4):
        assert url.startswith(endpoint(server))
        assert httpx.get(url, trust_env=False).content == b"for a browser"
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.read() == b"for a browser"
    tampered = v4.replace("report.txt", "other.txt")
    assert httpx.get(tampered, trust_env=False).status_code == 403

    upload_url = s3_client(server, admin, signature_version="s3v4").generate_presigned_url(
        "put_object", Params={"Bucket": "cloudtuner", "Key": "shared/upload.txt"}, ExpiresIn=300
    )
    assert httpx.put(upload_url, content=b"uploaded by url", trust_env=False).status_code == 200
    assert s3.get_object(Bucket="cloudtuner", Key="shared/upload.txt")["Body"].read() == b"uploaded by url"

    short = s3_client(server, admin, signature_version="s3v4").generate_presigned_url(
        "get_object", Params=params, ExpiresIn=1
    )
    expired = wait_until_sync(
        lambda: httpx.get(short, trust_env=False), lambda reply: reply.status_code != 200, timeout=10
    )
    assert expired.status_code == 403
    assert b"<Code>AccessDenied</Code>" in expired.content


def test_wrong_secret_is_signature_does_not_match(server: ServerProcess, admin: Key) -> None:
    s3 = s3_client(server, Key(admin.access_key_id, "not-the-secret-at-all"))
    assert error_code(lambda: s3.put_object(Bucket="cloudtuner", Key="intruder.txt", Body=b"x")) == (
        "SignatureDoesNotMatch",
        403,
    )
    assert error_code(lambda: s3.list_objects_v2(Bucket="cloudtuner")) == ("SignatureDoesNotMatch", 403)
    assert not (outputs(server) / "cloudtuner" / "intruder.txt").exists()
    unknown = s3_client(server, Key("CTANOSUCHKEY00000000", admin.secret))
    assert error_code(unknown.list_buckets) == ("InvalidAccessKeyId", 403)


TRAVERSAL_KEYS = ["../../x", "../x", "a/../../x", "..\\x", "%2e%2e/x", "..%2fx", "%252e%252e%252fx"]
RAW_TRAVERSAL_PATHS = [
    "%2e%2e/%2e%2e/x", "..%2f..%2fx", "%2E%2E%2Fx", "a/%2e%2e/%2e%2e/%2e%2e/x", "%252e%252e%252fx", "..%5cx",
    "a/../../x", "./x", "%2fetc%2fpasswd",
]  # fmt: skip


def test_path_traversal_is_refused(server: ServerProcess, admin: Key, tmp_path: Path) -> None:
    marker = b"escaped-" + os.urandom(8).hex().encode()
    s3 = s3_client(server, admin)
    for key in TRAVERSAL_KEYS:
        code, status = error_code(lambda key=key: s3.put_object(Bucket="cloudtuner", Key=key, Body=marker))
        assert 400 <= status < 500, (key, code, status)
    for raw in RAW_TRAVERSAL_PATHS:
        url = f"{endpoint(server)}/cloudtuner/{raw}"
        headers, _ = signed(url, "PUT", key=admin.access_key_id, secret=admin.secret, body=marker)
        reply = send(url, "PUT", headers, marker)
        assert reply.status == 400, (raw, reply.body)
    for raw_bucket in ("%2e%2e", "..", ".cloudtuner-s3"):
        url = f"{endpoint(server)}/{raw_bucket}/x"
        headers, _ = signed(url, "PUT", key=admin.access_key_id, secret=admin.secret, body=marker)
        assert send(url, "PUT", headers, marker).status == 400, raw_bucket
    # Nothing with the marker was written anywhere: inside or outside cloud_outputs.
    root = tmp_path
    written = [
        p for p in root.rglob("*") if p.is_file() and p.stat().st_size == len(marker) and p.read_bytes() == marker
    ]
    assert written == []
    assert [p.name for p in (outputs(server) / "cloudtuner").iterdir()] == []
