"""Fixtures: the S3 endpoint served by uvicorn on 127.0.0.1, and boto3 clients for it."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from cloudtuner.storage import FilesystemObjectStore, InMemoryCredentialResolver, S3Credential, S3Handler
from tests.integration.storage.asgi_app import RunningServer, make_app, start_server

ADMIN_KEY = "CTADMINKEY0000000001"
ADMIN_SECRET = "admin-secret/with+special=chars"
JOB_KEY = "CTJOBKEY000000000042"
JOB_SECRET = "job-secret-42"
OTHER_JOB_KEY = "CTJOBKEY000000000043"
OTHER_JOB_SECRET = "job-secret-43"
EXPIRED_KEY = "CTEXPIREDKEY00000001"
EXPIRED_SECRET = "expired-secret"
JOB_BUCKET = "outputs"


@dataclass
class S3Endpoint:
    """The running endpoint, its store and how to make clients for it."""

    server: RunningServer
    store: FilesystemObjectStore
    credentials: InMemoryCredentialResolver
    root: Path

    @property
    def url(self) -> str:
        """The endpoint URL (``http://127.0.0.1:PORT/api/cloud/storage``)."""
        return self.server.endpoint

    def client(self, key: str = ADMIN_KEY, secret: str = ADMIN_SECRET, **config: Any) -> Any:
        """Return a boto3 S3 client signing with ``key``/``secret``, path-style, us-east-1."""
        return make_client(self.url, key, secret, **config)


def make_client(url: str, key: str, secret: str, verify: str | bool | None = None, **config: Any) -> Any:
    """Return a real boto3 S3 client for ``url``."""
    return boto3.client(
        "s3",
        endpoint_url=url,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        region_name="us-east-1",
        verify=verify,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1, "mode": "standard"}, **config),
    )


def make_credentials() -> InMemoryCredentialResolver:
    """The test keys: an admin, two jobs limited to their prefix, an expired one."""
    now = datetime.now(UTC)
    return InMemoryCredentialResolver(
        [
            S3Credential(ADMIN_KEY, ADMIN_SECRET, principal="admin"),
            S3Credential(JOB_KEY, JOB_SECRET, bucket=JOB_BUCKET, prefix="jobs/42/", principal="job:42",
                         expires_at=now + timedelta(hours=1)),
            S3Credential(OTHER_JOB_KEY, OTHER_JOB_SECRET, bucket=JOB_BUCKET, prefix="jobs/43/",
                         principal="job:43", expires_at=now + timedelta(hours=1)),
            S3Credential(EXPIRED_KEY, EXPIRED_SECRET, expires_at=now - timedelta(minutes=1)),
        ]
    )  # fmt: skip


@pytest.fixture(scope="package")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Endpoint]:
    """One endpoint for the whole package (tests use their own buckets or keys)."""
    root = tmp_path_factory.mktemp("cloud_outputs")
    store = FilesystemObjectStore(root)
    credentials = make_credentials()
    server = start_server(make_app(S3Handler(store, credentials)))
    try:
        yield S3Endpoint(server, store, credentials, root)
    finally:
        server.stop()


@pytest.fixture
def bucket_factory(s3: S3Endpoint, request: pytest.FixtureRequest) -> Callable[[], str]:
    """Create fresh buckets named after the test."""
    counter = iter(range(1000))

    def make() -> str:
        digest = hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:12]
        name = f"t-{request.node.originalname.replace('_', '-')[:30].strip('-')}-{digest}-{next(counter)}"
        s3.client().create_bucket(Bucket=name)
        return name

    return make


@pytest.fixture
def bucket(bucket_factory: Callable[[], str]) -> str:
    """A fresh, empty bucket."""
    return bucket_factory()
