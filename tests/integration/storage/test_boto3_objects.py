"""Object operations driven by the real boto3 client against the endpoint on 127.0.0.1."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests.integration.storage.conftest import S3Endpoint


def error_code(error: ClientError) -> str:
    return str(error.response["Error"]["Code"])


def test_put_get_head_delete_round_trip(s3: S3Endpoint, bucket: str) -> None:
    client = s3.client()
    body = b"hello, delivered model" * 1000
    put = client.put_object(
        Bucket=bucket,
        Key="models/final/model.safetensors",
        Body=body,
        ContentType="application/octet-stream",
        Metadata={"job-id": "42", "note": "first"},
        ContentDisposition='attachment; filename="model.safetensors"',
    )
    assert put["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'

    got = client.get_object(Bucket=bucket, Key="models/final/model.safetensors")
    assert got["Body"].read() == body
    assert got["ContentLength"] == len(body)
    assert got["ETag"] == put["ETag"]
    assert got["Metadata"] == {"job-id": "42", "note": "first"}
    assert got["ContentDisposition"] == 'attachment; filename="model.safetensors"'

    head = client.head_object(Bucket=bucket, Key="models/final/model.safetensors")
    assert head["ContentLength"] == len(body)
    assert head["ContentType"] == "application/octet-stream"

    # The object is a plain file below the bucket's folder.
    assert (s3.root / bucket / "models" / "final" / "model.safetensors").read_bytes() == body

    client.delete_object(Bucket=bucket, Key="models/final/model.safetensors")
    with pytest.raises(ClientError) as caught:
        client.get_object(Bucket=bucket, Key="models/final/model.safetensors")
    assert error_code(caught.value) == "NoSuchKey"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert not (s3.root / bucket / "models").exists()  # empty folders are pruned


def test_keys_with_special_characters(s3: S3Endpoint, bucket: str) -> None:
    client = s3.client()
    keys = ["a b/c+d=e&f.txt", "ünïcødé/日本語.bin", "percent%20literal", "tilde~(1)!*'.txt", "semi;colon,comma@at$"]
    for key in keys:
        client.put_object(Bucket=bucket, Key=key, Body=key.encode())
    for key in keys:
        assert client.get_object(Bucket=bucket, Key=key)["Body"].read() == key.encode()
    listed = [o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]]
    assert listed == sorted(keys, key=lambda k: k.encode())


def test_empty_object(s3: S3Endpoint, bucket: str) -> None:
    client = s3.client()
    client.put_object(Bucket=bucket, Key="empty", Body=b"")
    got = client.get_object(Bucket=bucket, Key="empty")
    assert got["Body"].read() == b""
    assert got["ETag"] == f'"{hashlib.md5(b"").hexdigest()}"'


def test_ranged_get(s3: S3Endpoint, bucket: str) -> None:
    client = s3.client()
    body = bytes(range(256)) * 4
    client.put_object(Bucket=bucket, Key="r", Body=body)

    part = client.get_object(Bucket=bucket, Key="r", Range="bytes=10-19")
    assert part["Body"].read() == body[10:20]
    assert part["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert part["ContentRange"] == f"bytes 10-19/{len(body)}"

    assert client.get_object(Bucket=bucket, Key="r", Range="bytes=1000-")["Body"].read() == body[1000:]
    assert client.get_object(Bucket=bucket, Key="r", Range="bytes=-7")["Body"].read() == body[-7:]
    assert client.get_object(Bucket=bucket, Key="r", Range="bytes=1020-5000")["Body"].read() == body[1020:]

    with pytest.raises(ClientError) as caught:
        client.get_object(Bucket=bucket, Key="r", Range=f"bytes={len(body)}-")
    assert error_code(caught.value) == "InvalidRange"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 416


def test_conditional_get(s3: S3Endpoint, bucket: str) -> None:
    client = s3.client()
    etag = client.put_object(Bucket=bucket, Key="c", Body=b"data")["ETag"]
    assert client.get_object(Bucket=bucket, Key="c", IfMatch=etag)["Body"].read() == b"data"
    with pytest.raises(ClientError) as caught:
        client.get_object(Bucket=bucket, Key="c", IfMatch='"0123"')
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    with pytest.raises(ClientError) as caught:
        client.get_object(Bucket=bucket, Key="c", IfNoneMatch=etag)
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 304


def test_content_md5_mismatch_is_bad_digest(s3: S3Endpoint, bucket: str) -> None:
    client = s3.client()
    wrong = base64.b64encode(hashlib.md5(b"something else").digest()).decode()
    with pytest.raises(ClientError) as caught:
        client.put_object(Bucket=bucket, Key="md5", Body=b"payload", ContentMD5=wrong)
    assert error_code(caught.value) == "BadDigest"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400

    with pytest.raises(ClientError) as caught:
        client.put_object(Bucket=bucket, Key="md5", Body=b"payload", ContentMD5="not-base64!")
    assert error_code(caught.value) == "InvalidDigest"

    right = base64.b64encode(hashlib.md5(b"payload").digest()).decode()
    client.put_object(Bucket=bucket, Key="md5-ok", Body=b"payload", ContentMD5=right)
    assert [o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]] == ["md5-ok"]
    assert not list((s3.root / ".cloudtuner-s3" / "tmp").iterdir())


@pytest.mark.parametrize("algorithm", ["CRC32", "CRC32C", "SHA1", "SHA256"])
def test_flexible_checksums(s3: S3Endpoint, bucket: str, algorithm: str) -> None:
    client = s3.client()
    if algorithm == "CRC32C":  # botocore computes CRC32C only with awscrt: send the value ourselves
        google_crc32c = pytest.importorskip("google_crc32c")
        value = base64.b64encode(google_crc32c.value(b"checksummed" * 100).to_bytes(4, "big")).decode()
        put = client.put_object(Bucket=bucket, Key="sum", Body=b"checksummed" * 100, ChecksumCRC32C=value)
        assert put["ChecksumCRC32C"] == value
    else:
        put = client.put_object(Bucket=bucket, Key="sum", Body=b"checksummed" * 100, ChecksumAlgorithm=algorithm)
    assert put[f"Checksum{algorithm}"]
    got = client.get_object(Bucket=bucket, Key="sum", ChecksumMode="ENABLED")
    assert got["Body"].read() == b"checksummed" * 100
    assert got[f"Checksum{algorithm}"] == put[f"Checksum{algorithm}"]


def test_wrong_checksum_is_bad_digest(s3: S3Endpoint, bucket: str) -> None:
    client = s3.client()
    wrong = base64.b64encode(b"\x00\x00\x00\x01").decode()
    with pytest.raises(ClientError) as caught:
        client.put_object(Bucket=bucket, Key="bad-sum", Body=b"data", ChecksumCRC32=wrong)
    assert error_code(caught.value) == "BadDigest"
    assert "Contents" not in client.list_objects_v2(Bucket=bucket)


def test_missing_bucket_and_key(s3: S3Endpoint, bucket: str) -> None:
    client = s3.client()
    with pytest.raises(ClientError) as caught:
        client.get_object(Bucket="no-such-bucket-here", Key="x")
    assert error_code(caught.value) == "NoSuchBucket"
    with pytest.raises(ClientError) as caught:
        client.put_object(Bucket="no-such-bucket-here", Key="x", Body=b"x")
    assert error_code(caught.value) == "NoSuchBucket"
    with pytest.raises(ClientError) as caught:
        client.head_object(Bucket=bucket, Key="missing")
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    with pytest.raises(ClientError) as caught:
        client.head_bucket(Bucket="no-such-bucket-here")
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    with pytest.raises(ClientError) as caught:
        client.create_bucket(Bucket="Invalid_Bucket")
    assert error_code(caught.value) == "InvalidBucketName"


def test_copy_object(s3: S3Endpoint, bucket: str) -> None:
    client = s3.client()
    client.put_object(Bucket=bucket, Key="src/a", Body=b"copy me", Metadata={"k": "v"})
    client.copy_object(Bucket=bucket, Key="dst/a", CopySource={"Bucket": bucket, "Key": "src/a"})
    got = client.get_object(Bucket=bucket, Key="dst/a")
    assert got["Body"].read() == b"copy me"
    assert got["Metadata"] == {"k": "v"}


def test_delete_objects(s3: S3Endpoint, bucket: str) -> None:
    client = s3.client()
    for i in range(5):
        client.put_object(Bucket=bucket, Key=f"d/{i}", Body=b"x")
    result = client.delete_objects(
        Bucket=bucket, Delete={"Objects": [{"Key": f"d/{i}"} for i in range(5)] + [{"Key": "../escape"}]}
    )
    assert sorted(d["Key"] for d in result["Deleted"]) == [f"d/{i}" for i in range(5)]
    assert [e["Code"] for e in result["Errors"]] == ["InvalidArgument"]
    assert "Contents" not in client.list_objects_v2(Bucket=bucket)


def test_key_that_is_also_a_folder_conflicts(s3: S3Endpoint, bucket: str) -> None:
    client = s3.client()
    client.put_object(Bucket=bucket, Key="a/b", Body=b"1")
    with pytest.raises(ClientError) as caught:
        client.put_object(Bucket=bucket, Key="a", Body=b"2")
    assert error_code(caught.value) == "InvalidArgument"
    with pytest.raises(ClientError) as caught:
        client.put_object(Bucket=bucket, Key="a/b/c", Body=b"3")
    assert error_code(caught.value) == "InvalidArgument"
    assert client.get_object(Bucket=bucket, Key="a/b")["Body"].read() == b"1"


@pytest.mark.parametrize(
    "key",
    ["../../x", "../x", "a/../../x", "a/./b", "a//b", "/abs", "..\\x", "a\\b", "x\x00y",
     "%2e%2e%2fx", "%2e%2e/x", "a/%2E%2E/%2e%2e/x", "%252e%252e%252fx", "..%2fx", "..%5cx", "."],
)  # fmt: skip
def test_traversal_keys_are_refused(s3: S3Endpoint, bucket: str, key: str, tmp_path: Path) -> None:
    client = s3.client()
    with pytest.raises(ClientError) as caught:
        client.put_object(Bucket=bucket, Key=key, Body=b"escaped")
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    with pytest.raises(ClientError):
        client.get_object(Bucket=bucket, Key=key)
    escaped = [p for p in s3.root.parent.rglob("*") if p.is_file() and p.read_bytes() == b"escaped"]
    assert escaped == []


def test_if_none_match_star_refuses_overwrite(s3: S3Endpoint, bucket: str) -> None:
    client = s3.client()
    client.put_object(Bucket=bucket, Key="once", Body=b"first", IfNoneMatch="*")
    with pytest.raises(ClientError) as caught:
        client.put_object(Bucket=bucket, Key="once", Body=b"second", IfNoneMatch="*")
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    assert client.get_object(Bucket=bucket, Key="once")["Body"].read() == b"first"


def test_unsupported_operation_is_not_implemented(s3: S3Endpoint, bucket: str) -> None:
    client = s3.client()
    client.put_object(Bucket=bucket, Key="t", Body=b"x")
    with pytest.raises(ClientError) as caught:
        client.get_object_tagging(Bucket=bucket, Key="t")
    assert error_code(caught.value) == "NotImplemented"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 501
