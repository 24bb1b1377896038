"""Authentication and scope: SigV4 header and presigned URLs, wrong and expired keys, prefixes."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from unittest import mock

import httpx
import pytest
from botocore.exceptions import ClientError

from tests.integration.storage.conftest import (
    ADMIN_SECRET,
    EXPIRED_KEY,
    EXPIRED_SECRET,
    JOB_BUCKET,
    JOB_KEY,
    JOB_SECRET,
    OTHER_JOB_KEY,
    OTHER_JOB_SECRET,
    S3Endpoint,
)
from tests.integration.storage.test_boto3_objects import error_code


@pytest.fixture(scope="module")
def job_bucket(s3: S3Endpoint) -> str:
    s3.client().create_bucket(Bucket=JOB_BUCKET)
    return JOB_BUCKET


def test_wrong_secret_is_signature_does_not_match(s3: S3Endpoint, bucket: str) -> None:
    client = s3.client(secret="not-the-secret")
    with pytest.raises(ClientError) as caught:
        client.put_object(Bucket=bucket, Key="x", Body=b"x")
    assert error_code(caught.value) == "SignatureDoesNotMatch"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    with pytest.raises(ClientError) as caught:
        client.list_objects_v2(Bucket=bucket)
    assert error_code(caught.value) == "SignatureDoesNotMatch"
    assert "Contents" not in s3.client().list_objects_v2(Bucket=bucket)


def test_unknown_access_key(s3: S3Endpoint, bucket: str) -> None:
    with pytest.raises(ClientError) as caught:
        s3.client(key="CTUNKNOWNKEY00000000", secret=ADMIN_SECRET).list_objects_v2(Bucket=bucket)
    assert error_code(caught.value) == "InvalidAccessKeyId"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_expired_credentials(s3: S3Endpoint, bucket: str) -> None:
    with pytest.raises(ClientError) as caught:
        s3.client(key=EXPIRED_KEY, secret=EXPIRED_SECRET).get_object(Bucket=bucket, Key="x")
    assert error_code(caught.value) == "ExpiredToken"


def test_job_key_is_limited_to_its_prefix(s3: S3Endpoint, job_bucket: str) -> None:
    job = s3.client(key=JOB_KEY, secret=JOB_SECRET)
    job.put_object(Bucket=job_bucket, Key="jobs/42/model.safetensors", Body=b"mine")
    assert job.get_object(Bucket=job_bucket, Key="jobs/42/model.safetensors")["Body"].read() == b"mine"

    calls: list[Callable[[], object]] = [
        lambda: job.put_object(Bucket=job_bucket, Key="jobs/43/model.safetensors", Body=b"theirs"),
        lambda: job.put_object(Bucket=job_bucket, Key="jobs/420/x", Body=b"near miss"),
        lambda: job.get_object(Bucket=job_bucket, Key="other/file"),
        lambda: job.list_objects_v2(Bucket=job_bucket, Prefix="jobs/43/"),
        lambda: job.list_objects_v2(Bucket=job_bucket, Prefix="other"),
        lambda: job.create_bucket(Bucket="job-made-bucket"),
        lambda: job.head_bucket(Bucket="some-other-bucket"),
        lambda: job.create_multipart_upload(Bucket=job_bucket, Key="jobs/43/big"),
    ]
    for call in calls:
        with pytest.raises(ClientError) as caught:
            call()
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403

    # Listing the bucket root or a shorter prefix is narrowed to the key's own prefix.
    s3.client().put_object(Bucket=job_bucket, Key="jobs/43/secret", Body=b"other job")
    listed = job.list_objects_v2(Bucket=job_bucket)
    assert [o["Key"] for o in listed["Contents"]] == ["jobs/42/model.safetensors"]
    listed = job.list_objects_v2(Bucket=job_bucket, Prefix="jobs/4", Delimiter="/")
    assert [p["Prefix"] for p in listed["CommonPrefixes"]] == ["jobs/42/"]
    assert [b["Name"] for b in job.list_buckets()["Buckets"]] == [job_bucket]

    # Deleting many keys: the other job's key is refused one by one.
    result = job.delete_objects(
        Bucket=job_bucket,
        Delete={"Objects": [{"Key": "jobs/42/model.safetensors"}, {"Key": "jobs/43/secret"}]},
    )
    assert [d["Key"] for d in result["Deleted"]] == ["jobs/42/model.safetensors"]
    assert [(e["Key"], e["Code"]) for e in result["Errors"]] == [("jobs/43/secret", "AccessDenied")]
    assert s3.client().get_object(Bucket=job_bucket, Key="jobs/43/secret")["Body"].read() == b"other job"


def test_another_jobs_credentials_are_refused_for_this_prefix(s3: S3Endpoint, job_bucket: str) -> None:
    other = s3.client(key=OTHER_JOB_KEY, secret=OTHER_JOB_SECRET)
    with pytest.raises(ClientError) as caught:
        other.put_object(Bucket=job_bucket, Key="jobs/42/overwrite", Body=b"x")
    assert error_code(caught.value) == "AccessDenied"


# boto3 presigns with Signature Version 2 in us-east-1 unless told "s3v4": both must work.
SIGNATURE_VERSIONS = [
    pytest.param({}, id="boto3-default-sigv2"),
    pytest.param({"signature_version": "s3v4"}, id="sigv4"),
]


@pytest.mark.parametrize("config", SIGNATURE_VERSIONS)
def test_presigned_get_and_put_with_plain_http(s3: S3Endpoint, bucket: str, config: dict[str, str]) -> None:
    client = s3.client(**config)
    client.put_object(Bucket=bucket, Key="shared/model v1.bin", Body=b"presigned body")
    url = client.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "shared/model v1.bin"}, ExpiresIn=300
    )
    response = httpx.get(url)
    assert response.status_code == 200
    assert response.content == b"presigned body"

    ranged = httpx.get(url, headers={"Range": "bytes=0-8"})
    assert ranged.status_code == 206
    assert ranged.content == b"presigned"

    disposition = client.generate_presigned_url(
        "get_object",
        Params={"Bucket": bucket, "Key": "shared/model v1.bin", "ResponseContentDisposition": "attachment"},
    )
    assert httpx.get(disposition).headers["content-disposition"] == "attachment"

    put_url = client.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "up/loaded.txt"})
    assert httpx.put(put_url, content=b"via presigned put").status_code == 200
    assert client.get_object(Bucket=bucket, Key="up/loaded.txt")["Body"].read() == b"via presigned put"

    if config:
        assert "X-Amz-Signature=" in url
    else:
        assert "AWSAccessKeyId=" in url
    tampered = url.replace("model%20v1.bin", "other.bin")
    response = httpx.get(tampered)
    assert response.status_code == 403
    assert b"<Code>SignatureDoesNotMatch</Code>" in response.content


@pytest.mark.parametrize("config", SIGNATURE_VERSIONS)
def test_expired_presigned_url(s3: S3Endpoint, bucket: str, config: dict[str, str]) -> None:
    client = s3.client(**config)
    client.put_object(Bucket=bucket, Key="old", Body=b"x")
    signed_at = datetime.now(UTC).replace(tzinfo=None) - timedelta(hours=2)
    with (
        mock.patch("botocore.auth.get_current_datetime", return_value=signed_at),
        mock.patch("botocore.auth.time.time", return_value=signed_at.replace(tzinfo=UTC).timestamp()),
    ):
        url = client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "old"}, ExpiresIn=3600)
    response = httpx.get(url)
    assert response.status_code == 403
    assert b"<Code>AccessDenied</Code>" in response.content
    assert b"Request has expired" in response.content


def test_skewed_clock_is_refused(s3: S3Endpoint, bucket: str) -> None:
    skewed = datetime.now(UTC).replace(tzinfo=None) - timedelta(minutes=20)
    with mock.patch("botocore.auth.get_current_datetime", return_value=skewed), pytest.raises(ClientError) as caught:
        s3.client().list_objects_v2(Bucket=bucket)
    assert error_code(caught.value) == "RequestTimeTooSkewed"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_anonymous_requests_are_refused(s3: S3Endpoint, bucket: str) -> None:
    response = httpx.get(f"{s3.url}/{bucket}")
    assert response.status_code == 403
    assert b"<Code>AccessDenied</Code>" in response.content
    assert b"<RequestId>" in response.content
