"""Helpers for the storage e2e tests: keys from a real server, boto3 clients for it, job keys.

Job keys are issued the way the dispatcher will issue them, by calling the service functions on
the server's own database and secret key from the test process (the server reads them from there
like any key it did not create itself).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from cloudtuner.core.clock import SystemClock
from cloudtuner.db.engine import Database
from cloudtuner.providers.registry import ProviderRegistry
from cloudtuner.services.config_history import ConfigHistory
from cloudtuner.services.context import ServiceContext
from cloudtuner.services.secrets import SecretBox, SecretStore
from cloudtuner.services.storage_credentials import expire_job_storage_credentials, issue_job_storage_credentials
from cloudtuner.settings import Settings
from tests.e2e.harness import ServerProcess

T = TypeVar("T")
MOUNT = "/api/cloud/storage"


@dataclass(frozen=True)
class Key:
    """An access key and its secret."""

    access_key_id: str
    secret: str


def endpoint(server: ServerProcess) -> str:
    """The S3 endpoint URL of ``server``."""
    return server.url + MOUNT


def s3_client(server: ServerProcess, key: Key, **config: Any) -> Any:
    """Return an unmodified boto3 S3 client for the server's endpoint (path-style, one attempt)."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint(server),
        aws_access_key_id=key.access_key_id,
        aws_secret_access_key=key.secret,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1, "mode": "standard"}, **config),
    )


def create_admin_key(server: ServerProcess, **body: Any) -> Key:
    """Create a key with POST /api/cloud/storage/credentials."""
    with server.http() as http:
        reply = http.post(f"{MOUNT}/credentials", json=body)
    assert reply.status_code == 201, reply.text
    data = reply.json()
    assert data["endpoint_url"] == endpoint(server)
    return Key(data["access_key_id"], data["secret_access_key"])


def error_code(call: Callable[[], object]) -> tuple[str, int]:
    """Run a boto3 call that must fail; return its S3 error code and HTTP status."""
    try:
        call()
    except ClientError as exc:
        return str(exc.response["Error"]["Code"]), int(exc.response["ResponseMetadata"]["HTTPStatusCode"])
    raise AssertionError("the call succeeded")


def with_server_context(server: ServerProcess, work: Callable[[ServiceContext], Awaitable[T]]) -> T:
    """Run ``work`` with a service context on the server's database and secret key."""
    settings = Settings(data_dir=server.data_dir, database_url=server.database_url, scheduler_enabled=False)

    async def run() -> T:
        db = Database(settings.resolved_database_url)
        clock = SystemClock()
        ctx = ServiceContext(
            settings=settings,
            db=db,
            providers=ProviderRegistry([]),
            config_history=ConfigHistory(settings.config_history_dir),
            secrets=SecretStore(db, SecretBox(settings.secret_key_file), clock),
            clock=clock,
        )
        try:
            return await work(ctx)
        finally:
            await db.dispose()

    return asyncio.run(run())


def issue_job_key(server: ServerProcess, job_id: str) -> Key:
    """Issue the job's storage key, as the dispatcher does when the job starts."""

    async def work(ctx: ServiceContext) -> Key:
        async with ctx.db.transaction() as session:
            issued = await issue_job_storage_credentials(ctx, session, job_id)
        assert (issued.bucket, issued.prefix) == ("cloudtuner", f"jobs/{job_id}/")
        return Key(issued.access_key_id, issued.secret_access_key)

    return with_server_context(server, work)


def end_job_keys(server: ServerProcess, job_id: str, ended_at: datetime) -> int:
    """Stamp the end of the job's keys, as the job's move to a final state does."""

    async def work(ctx: ServiceContext) -> int:
        async with ctx.db.transaction() as session:
            return await expire_job_storage_credentials(session, job_id, ended_at)

    return with_server_context(server, work)
