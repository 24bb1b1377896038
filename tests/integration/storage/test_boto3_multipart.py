"""Multipart uploads driven by the real boto3 client (and s3transfer)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from tests.integration.storage.conftest import S3Endpoint
from tests.integration.storage.test_boto3_objects import error_code

MIB = 1024 * 1024


def _internal_leftovers(s3: S3Endpoint) -> list[Path]:
    internal = s3.root / ".cloudtuner-s3"
    return list((internal / "tmp").iterdir()) + list((internal / "uploads").iterdir())


def test_upload_file_64_mib_in_8_mib_parts(s3: S3Endpoint, bucket: str, tmp_path: Path) -> None:
    source = tmp_path / "model.bin"
    source.write_bytes(os.urandom(64 * MIB))
    config = TransferConfig(multipart_threshold=8 * MIB, multipart_chunksize=8 * MIB, max_concurrency=4)
    client = s3.client()

    client.upload_file(str(source), bucket, "jobs/1/model.bin", Config=config)

    head = client.head_object(Bucket=bucket, Key="jobs/1/model.bin")
    assert head["ContentLength"] == 64 * MIB
    data = source.read_bytes()
    part_md5s = b"".join(hashlib.md5(data[i : i + 8 * MIB]).digest() for i in range(0, len(data), 8 * MIB))
    assert head["ETag"] == f'"{hashlib.md5(part_md5s).hexdigest()}-8"'
    assert (s3.root / bucket / "jobs" / "1" / "model.bin").read_bytes() == data

    target = tmp_path / "back.bin"
    client.download_file(bucket, "jobs/1/model.bin", str(target), Config=config)
    assert hashlib.sha256(target.read_bytes()).digest() == hashlib.sha256(data).digest()
    assert _internal_leftovers(s3) == []


def test_abort_leaves_nothing(s3: S3Endpoint, bucket: str) -> None:
    client = s3.client()
    upload_id = client.create_multipart_upload(Bucket=bucket, Key="partial.bin")["UploadId"]
    client.upload_part(Bucket=bucket, Key="partial.bin", UploadId=upload_id, PartNumber=1, Body=b"x" * MIB)
    parts = client.list_parts(Bucket=bucket, Key="partial.bin", UploadId=upload_id)["Parts"]
    assert [p["PartNumber"] for p in parts] == [1]

    client.abort_multipart_upload(Bucket=bucket, Key="partial.bin", UploadId=upload_id)

    with pytest.raises(ClientError) as caught:
        client.list_parts(Bucket=bucket, Key="partial.bin", UploadId=upload_id)
    assert error_code(caught.value) == "NoSuchUpload"
    with pytest.raises(ClientError) as caught:
        client.head_object(Bucket=bucket, Key="partial.bin")
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert list((s3.root / bucket).iterdir()) == []
    assert _internal_leftovers(s3) == []


def test_complete_checks_parts(s3: S3Endpoint, bucket: str) -> None:
    client = s3.client()
    key = "checked.bin"
    upload_id = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    etags = [
        client.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=n, Body=body)["ETag"]
        for n, body in ((1, b"a" * 5 * MIB), (2, b"b" * 1024), (3, b"c" * 10))
    ]

    def complete(parts: list[dict[str, object]]) -> str:
        with pytest.raises(ClientError) as caught:
            client.complete_multipart_upload(
                Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        return error_code(caught.value)

    assert complete([{"PartNumber": 2, "ETag": etags[1]}, {"PartNumber": 1, "ETag": etags[0]}]) == "InvalidPartOrder"
    assert complete([{"PartNumber": 1, "ETag": '"0000"'}]) == "InvalidPart"
    assert complete([{"PartNumber": 4, "ETag": etags[0]}]) == "InvalidPart"
    assert (
        complete([{"PartNumber": n + 1, "ETag": etags[n]} for n in range(3)]) == "EntityTooSmall"
    )  # part 2 is 1 KiB and not the last

    # The failed attempts left the upload intact: complete it with parts 1 and 3.
    done = client.complete_multipart_upload(
        Bucket=bucket,
        Key=key,
        UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etags[0]}, {"PartNumber": 3, "ETag": etags[2]}]},
    )
    assert done["ETag"].endswith('-2"')
    assert client.get_object(Bucket=bucket, Key=key)["Body"].read() == b"a" * 5 * MIB + b"c" * 10
    with pytest.raises(ClientError) as caught:
        client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
    assert error_code(caught.value) == "NoSuchUpload"
    assert _internal_leftovers(s3) == []


def test_upload_id_of_another_key_is_refused(s3: S3Endpoint, bucket: str) -> None:
    client = s3.client()
    upload_id = client.create_multipart_upload(Bucket=bucket, Key="one")["UploadId"]
    with pytest.raises(ClientError) as caught:
        client.upload_part(Bucket=bucket, Key="two", UploadId=upload_id, PartNumber=1, Body=b"x")
    assert error_code(caught.value) == "NoSuchUpload"
    with pytest.raises(ClientError) as caught:
        client.upload_part(Bucket=bucket, Key="one", UploadId="../../etc", PartNumber=1, Body=b"x")
    assert error_code(caught.value) == "NoSuchUpload"
    with pytest.raises(ClientError) as caught:
        client.upload_part(Bucket=bucket, Key="one", UploadId=upload_id, PartNumber=10001, Body=b"x")
    assert error_code(caught.value) == "InvalidArgument"
    client.abort_multipart_upload(Bucket=bucket, Key="one", UploadId=upload_id)


def test_part_checksums_are_verified_and_combined(s3: S3Endpoint, bucket: str) -> None:
    client = s3.client()
    key = "summed.bin"
    upload_id = client.create_multipart_upload(Bucket=bucket, Key=key, ChecksumAlgorithm="SHA256")["UploadId"]
    parts = []
    for number, body in ((1, b"p" * 5 * MIB), (2, b"q" * 100)):
        reply = client.upload_part(
            Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body, ChecksumAlgorithm="SHA256"
        )
        parts.append({"PartNumber": number, "ETag": reply["ETag"], "ChecksumSHA256": reply["ChecksumSHA256"]})
    listed = client.list_parts(Bucket=bucket, Key=key, UploadId=upload_id)["Parts"]
    assert [p["ChecksumSHA256"] for p in listed] == [p["ChecksumSHA256"] for p in parts]
    done = client.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
    )
    assert done["ChecksumSHA256"].endswith("-2")
