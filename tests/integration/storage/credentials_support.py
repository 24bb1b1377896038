"""Helpers for the credential tests: signed S3 requests sent to the app in process, jobs to issue keys to."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from tests.integration.conftest import INLINE_JOB, RunningApp
from tests.integration.storage.raw import signed

BASE_URL = "http://cloudtuner.test"
MOUNT = "/api/cloud/storage"
CREDENTIALS = "/api/cloud/storage/credentials"


@dataclass(frozen=True)
class Key:
    """An access key and its secret."""

    access_key_id: str
    secret: str


async def s3_call(
    running: RunningApp,
    method: str,
    path: str,
    key: Key,
    *,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """Send a SigV4-signed S3 request for ``MOUNT + path`` (raw, as written) to the app in process."""
    url = f"{BASE_URL}{MOUNT}{path}"
    signed_headers, _ = signed(url, method, key=key.access_key_id, secret=key.secret, headers=headers, body=body)
    return await running.client.request(method, url, headers=signed_headers, content=body)


def s3_code(response: httpx.Response) -> str | None:
    """Return the S3 error code of an XML error reply, or None."""
    text = response.text
    start = text.find("<Code>")
    if start < 0:
        return None
    return text[start + 6 : text.index("</Code>", start)]


async def create_key(running: RunningApp, **body: Any) -> tuple[Key, dict[str, Any]]:
    """Create an admin key through the API; return it and the reply."""
    reply = await running.client.post(CREDENTIALS, json=body)
    assert reply.status_code == 201, reply.text
    data: dict[str, Any] = reply.json()
    return Key(data["access_key_id"], data["secret_access_key"]), data


async def submit_job(running: RunningApp) -> str:
    """Submit a job to the scripted provider; return its id."""
    reply = await running.client.post("/api/cloud/jobs/submit?provider=scripted", json=INLINE_JOB)
    assert reply.status_code == 202, reply.text
    job_id: str = reply.json()["job_id"]
    return job_id
