"""Listing buckets and objects through boto3: prefixes, delimiters, pagination, V1 and V2."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.storage.conftest import S3Endpoint

KEYS = [
    "a-1",
    "a/b/c.txt",
    "a/b/d.txt",
    "a/e.txt",
    "a0",
    "jobs/1/checkpoint-100/model.bin",
    "jobs/1/checkpoint-200/model.bin",
    "jobs/1/final.safetensors",
    "jobs/10/final.safetensors",
    "jobs/2/final.safetensors",
    "top.txt",
    "z z/with space",
]


@pytest.fixture
def filled(s3: S3Endpoint, bucket: str) -> str:
    client = s3.client()
    for key in KEYS:
        client.put_object(Bucket=bucket, Key=key, Body=key.encode())
    return bucket


def _pages(client: Any, operation: str, **kwargs: Any) -> list[dict[str, Any]]:
    return list(client.get_paginator(operation).paginate(**kwargs))


def test_list_everything_in_s3_order(s3: S3Endpoint, filled: str) -> None:
    listed = s3.client().list_objects_v2(Bucket=filled)
    assert [o["Key"] for o in listed["Contents"]] == sorted(KEYS)
    assert listed["KeyCount"] == len(KEYS)
    assert listed["IsTruncated"] is False
    sizes = {o["Key"]: o["Size"] for o in listed["Contents"]}
    assert sizes == {k: len(k.encode()) for k in KEYS}


def test_delimiter_and_prefix(s3: S3Endpoint, filled: str) -> None:
    client = s3.client()
    top = client.list_objects_v2(Bucket=filled, Delimiter="/")
    assert [o["Key"] for o in top["Contents"]] == ["a-1", "a0", "top.txt"]
    assert [p["Prefix"] for p in top["CommonPrefixes"]] == ["a/", "jobs/", "z z/"]

    job = client.list_objects_v2(Bucket=filled, Prefix="jobs/1/", Delimiter="/")
    assert [o["Key"] for o in job["Contents"]] == ["jobs/1/final.safetensors"]
    assert [p["Prefix"] for p in job["CommonPrefixes"]] == ["jobs/1/checkpoint-100/", "jobs/1/checkpoint-200/"]

    partial = client.list_objects_v2(Bucket=filled, Prefix="jobs/1", Delimiter="/")
    assert [p["Prefix"] for p in partial["CommonPrefixes"]] == ["jobs/1/", "jobs/10/"]
    assert "Contents" not in partial

    other = client.list_objects_v2(Bucket=filled, Prefix="a/b", Delimiter=".")
    assert [p["Prefix"] for p in other["CommonPrefixes"]] == ["a/b/c.", "a/b/d."]


def test_paginator_v2(s3: S3Endpoint, filled: str) -> None:
    client = s3.client()
    pages = _pages(client, "list_objects_v2", Bucket=filled, PaginationConfig={"PageSize": 5})
    assert len(pages) == 3
    assert [o["Key"] for page in pages for o in page.get("Contents", [])] == sorted(KEYS)

    pages = _pages(client, "list_objects_v2", Bucket=filled, Delimiter="/", PaginationConfig={"PageSize": 2})
    keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
    prefixes = [p["Prefix"] for page in pages for p in page.get("CommonPrefixes", [])]
    assert keys == ["a-1", "a0", "top.txt"]
    assert prefixes == ["a/", "jobs/", "z z/"]
    assert len(pages) == 3


def test_start_after(s3: S3Endpoint, filled: str) -> None:
    listed = s3.client().list_objects_v2(Bucket=filled, StartAfter="jobs/1/final.safetensors")
    assert [o["Key"] for o in listed["Contents"]] == sorted(KEYS)[sorted(KEYS).index("jobs/1/final.safetensors") + 1 :]


def test_paginator_v1(s3: S3Endpoint, filled: str) -> None:
    client = s3.client()
    pages = _pages(client, "list_objects", Bucket=filled, PaginationConfig={"PageSize": 4})
    assert [o["Key"] for page in pages for o in page.get("Contents", [])] == sorted(KEYS)
    pages = _pages(client, "list_objects", Bucket=filled, Delimiter="/", PaginationConfig={"PageSize": 2})
    assert [p["Prefix"] for page in pages for p in page.get("CommonPrefixes", [])] == ["a/", "jobs/", "z z/"]


def test_list_buckets_and_bad_token(s3: S3Endpoint, filled: str) -> None:
    client = s3.client()
    assert filled in [b["Name"] for b in client.list_buckets()["Buckets"]]
    with pytest.raises(client.exceptions.ClientError) as caught:
        client.list_objects_v2(Bucket=filled, ContinuationToken="garbage!")
    assert caught.value.response["Error"]["Code"] == "InvalidArgument"
