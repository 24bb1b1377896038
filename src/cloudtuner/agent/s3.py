"""Uploading a job's outputs to the server's built-in S3 endpoint: plain httpx with SigV4 signing."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, urlsplit

import httpx

from cloudtuner.schemas.workers import WorkerStorage


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def signed_put_headers(
    storage: WorkerStorage, url: str, payload_sha256: str, now: datetime | None = None
) -> dict[str, str]:
    """Return the headers that sign ``PUT url`` (a body whose SHA-256 is ``payload_sha256``) with SigV4."""
    now = now or datetime.now(UTC)
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    day = stamp[:8]
    parts = urlsplit(url)
    host = parts.netloc
    headers = {"host": host, "x-amz-content-sha256": payload_sha256, "x-amz-date": stamp}
    signed = ";".join(sorted(headers))
    canonical = "\n".join(
        [
            "PUT",
            parts.path,
            "",
            "".join(f"{name}:{headers[name]}\n" for name in sorted(headers)),
            signed,
            payload_sha256,
        ]
    )
    scope = f"{day}/{storage.region}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = ("AWS4" + storage.secret_access_key).encode()
    for part in (day, storage.region, "s3", "aws4_request"):
        key = _hmac(key, part)
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={storage.access_key_id}/{scope}, SignedHeaders={signed}, Signature={signature}"
    )
    del headers["host"]
    return headers


def object_url(storage: WorkerStorage, relative: str) -> str:
    """Return the path-style URL of ``<prefix><relative>`` in the job's bucket."""
    key = storage.prefix + relative
    return f"{storage.endpoint_url.rstrip('/')}/{quote(storage.bucket)}/{quote(key, safe='/-_.~')}"


def upload_tree(client: httpx.Client, storage: WorkerStorage, folder: Path) -> list[str]:
    """Upload every file under ``folder`` to ``<prefix>output/...``; return the keys written.

    Raises:
        httpx.HTTPError: a request failed or was refused.
    """
    keys: list[str] = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = "output/" + path.relative_to(folder).as_posix()
        body = path.read_bytes()
        url = object_url(storage, relative)
        headers = signed_put_headers(storage, url, hashlib.sha256(body).hexdigest())
        reply = client.put(url, content=body, headers=headers)
        reply.raise_for_status()
        keys.append(storage.prefix + relative)
    return keys
