"""Helpers of the delivery e2e tests: a second S3 server (moto) and a fake Hub on loopback, a
cloudtuner server pointed at the fake Replicate (and the fake Hub), and waits for a job's delivery.

The fake Replicate's trainer uploads its outputs where the run's inputs say
(``tests/fakes/replicate/delivery.py``); these helpers only start the destinations and read back.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
from botocore.config import Config

from tests.e2e.harness import ServerFactory, ServerProcess
from tests.e2e.replicate_support import TOKEN
from tests.fakes.hf_hub import FakeHub
from tests.fakes.replicate import FakeReplicateRemote
from tests.support.waiting import wait_until_sync

MOTO_KEY = ("motoAccessKey", "motoSecretKeyThatMustNotLeak")


@contextmanager
def moto_server() -> Iterator[str]:
    """Run moto's S3 in server mode on 127.0.0.1 (a free port) in this process; yield its URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def moto_client(url: str) -> Any:
    """A boto3 S3 client for the moto server."""
    return boto3.client(
        "s3",
        endpoint_url=url,
        aws_access_key_id=MOTO_KEY[0],
        aws_secret_access_key=MOTO_KEY[1],
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}),
    )


@contextmanager
def fake_hub() -> Iterator[FakeHub]:
    """The fake Hugging Face Hub in a thread of this process."""
    with FakeHub() as hub:
        yield hub


def delivery_server(
    servers: ServerFactory, fake: FakeReplicateRemote, *, public_url: bool = True, env: dict[str, str] | None = None
) -> ServerProcess:
    """Start a cloudtuner server that runs jobs on the fake Replicate, with its public URL on loopback
    (so runs can deliver back to it) unless ``public_url`` is False."""
    server = servers.create(
        "server",
        env={
            "CLOUDTUNER_REPLICATE_API_URL": fake.base_url,
            "REPLICATE_API_TOKEN": TOKEN,
            "CLOUDTUNER_RECONCILE_INTERVAL_SECONDS": "0.3",
            **(env or {}),
        },
    )
    if public_url:
        server.extra_env["CLOUDTUNER_PUBLIC_URL"] = server.url
    return server.start()


def artifacts(server: ServerProcess, job_id: str) -> dict[str, Any]:
    """Return GET /api/cloud/jobs/{id}/artifacts."""
    with server.http() as http:
        reply = http.get(f"/api/cloud/jobs/{job_id}/artifacts")
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


def wait_for_delivery(server: ServerProcess, job_id: str, timeout: float = 30.0) -> dict[str, Any]:
    """Wait until the job's delivery has been collected; fail if it failed. Return the artifacts reply."""

    def done(reply: dict[str, Any]) -> bool:
        delivery = reply.get("delivery") or {}
        if delivery.get("state") == "failed":
            raise AssertionError(f"the delivery of job {job_id} failed: {delivery}")
        return delivery.get("state") == "done"

    return wait_until_sync(lambda: artifacts(server, job_id), done, timeout=timeout, interval=0.2)


def by_path(reply: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The artifacts of a reply, by path."""
    return {item["path"]: item for item in reply["artifacts"]}
