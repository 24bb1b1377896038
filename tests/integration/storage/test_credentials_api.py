"""The credentials API (/api/cloud/storage/credentials) and the S3 endpoint mounted in the app, on both databases."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from sqlalchemy import select

from cloudtuner.api.routes.storage import S3Adapter
from cloudtuner.db.tables import StorageCredentialRow
from tests.fakes.scripted_provider import ScriptedProvider
from tests.integration.conftest import RunningApp, make_settings, start_app
from tests.integration.storage.credentials_support import (
    BASE_URL,
    CREDENTIALS,
    MOUNT,
    Key,
    create_key,
    s3_call,
    s3_code,
)
from tests.integration.storage.raw import signed


async def test_create_list_revoke(manual: RunningApp) -> None:
    key, created = await create_key(manual, name="laptop", bucket="models", prefix="flux/", expires_days=30)
    assert created["kind"] == "admin"
    assert created["status"] == "active"
    assert created["access_key_id"].startswith("CTA")
    assert len(created["secret_access_key"]) == 40
    assert (created["bucket"], created["prefix"], created["name"]) == ("models", "flux/", "laptop")
    assert created["endpoint_url"] == f"{BASE_URL}{MOUNT}"
    assert created["expires_at"] is not None
    assert created["created_by"] == "local"

    listed = await manual.client.get(CREDENTIALS)
    assert listed.status_code == 200
    assert key.secret not in listed.text
    assert [c["access_key_id"] for c in listed.json()["credentials"]] == [key.access_key_id]
    assert "secret_access_key" not in listed.json()["credentials"][0]

    revoked = await manual.client.delete(f"{CREDENTIALS}/{key.access_key_id}")
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["credential"]["status"] == "revoked"
    assert key.secret not in revoked.text
    again = await manual.client.delete(f"{CREDENTIALS}/{key.access_key_id}")
    assert again.status_code == 200
    assert again.json()["credential"]["revoked_at"] == revoked.json()["credential"]["revoked_at"]

    assert (await manual.client.get(CREDENTIALS)).json()["credentials"] == []
    everything = (await manual.client.get(CREDENTIALS, params={"all": "true"})).json()["credentials"]
    assert [(c["access_key_id"], c["status"]) for c in everything] == [(key.access_key_id, "revoked")]
    admin_only = await manual.client.get(CREDENTIALS, params={"all": "true", "kind": "job"})
    assert admin_only.json()["credentials"] == []


async def test_the_secret_is_stored_encrypted(manual: RunningApp) -> None:
    key, _ = await create_key(manual)
    async with manual.ctx.db.read() as session:
        row = await session.scalar(select(StorageCredentialRow))
    assert row is not None
    assert key.secret not in row.secret_ciphertext
    assert manual.ctx.secrets.box.decrypt(row.secret_ciphertext) == key.secret


async def test_invalid_requests(manual: RunningApp) -> None:
    cases = [
        ({"bucket": "Not_A_Bucket"}, 400, "invalid_storage_scope"),
        ({"bucket": "ab"}, 400, "invalid_storage_scope"),
        ({"prefix": "../escape/"}, 400, "invalid_storage_scope"),
        ({"prefix": "/abs/"}, 400, "invalid_storage_scope"),
        ({"prefix": "a\\b"}, 400, "invalid_storage_scope"),
        ({"expires_days": 0}, 422, "validation_error"),
        ({"expires_days": -1}, 422, "validation_error"),
        ({"secret_access_key": "mine"}, 422, "validation_error"),
    ]
    for body, status, code in cases:
        reply = await manual.client.post(CREDENTIALS, json=body)
        assert (reply.status_code, reply.json()["code"]) == (status, code), (body, reply.text)
        assert reply.json()["detail"]
    missing = await manual.client.delete(f"{CREDENTIALS}/CTANOSUCHKEY00000000")
    assert missing.status_code == 404
    assert missing.json()["code"] == "storage_credential_not_found"
    assert (await manual.client.get(CREDENTIALS)).json()["credentials"] == []


async def test_endpoint_url_follows_the_public_url(tmp_path: Path, database_url: str) -> None:
    settings = make_settings(tmp_path, database_url, scheduler_enabled=False, public_url="https://ct.example.org")
    async with start_app(settings, ScriptedProvider()) as running:
        _, created = await create_key(running)
        assert created["endpoint_url"] == "https://ct.example.org/api/cloud/storage"


async def test_s3_through_the_app(manual: RunningApp) -> None:
    key, _ = await create_key(manual)
    assert (manual.ctx.settings.outputs_dir / "cloudtuner").is_dir()  # the default bucket, made at start
    put = await s3_call(manual, "PUT", "/cloudtuner/a/b.txt", key, body=b"hello")
    assert put.status_code == 200, put.text
    assert (manual.ctx.settings.outputs_dir / "cloudtuner" / "a" / "b.txt").read_bytes() == b"hello"
    got = await s3_call(manual, "GET", "/cloudtuner/a/b.txt", key, headers={"Range": "bytes=1-3"})
    assert (got.status_code, got.content) == (206, b"ell")
    head = await s3_call(manual, "HEAD", "/cloudtuner/a/b.txt", key)
    assert (head.status_code, head.headers["content-length"], head.content) == (200, "5", b"")
    listed = await s3_call(manual, "GET", "/cloudtuner?list-type=2&prefix=a%2F", key)
    assert "<Key>a/b.txt</Key>" in listed.text
    root = await s3_call(manual, "GET", "", key)
    assert "<Name>cloudtuner</Name>" in root.text


async def test_wrong_secret_and_unknown_key(manual: RunningApp) -> None:
    key, _ = await create_key(manual)
    wrong = await s3_call(manual, "GET", "/cloudtuner", Key(key.access_key_id, "not-the-secret"))
    assert (wrong.status_code, s3_code(wrong)) == (403, "SignatureDoesNotMatch")
    unknown = await s3_call(manual, "GET", "/cloudtuner", Key("CTANOSUCHKEY00000000", key.secret))
    assert (unknown.status_code, s3_code(unknown)) == (403, "InvalidAccessKeyId")
    anonymous = await manual.client.get(f"{MOUNT}/cloudtuner")
    assert (anonymous.status_code, s3_code(anonymous)) == (403, "AccessDenied")


async def test_revocation_takes_effect_at_once_in_this_process(manual: RunningApp) -> None:
    key, _ = await create_key(manual)
    assert (await s3_call(manual, "GET", "/cloudtuner", key)).status_code == 200
    await manual.client.delete(f"{CREDENTIALS}/{key.access_key_id}")
    refused = await s3_call(manual, "GET", "/cloudtuner", key)
    assert (refused.status_code, s3_code(refused)) == (403, "InvalidAccessKeyId")


async def test_scoped_admin_key(manual: RunningApp) -> None:
    admin, _ = await create_key(manual)
    assert (await s3_call(manual, "PUT", "/models", admin)).status_code == 200
    scoped, _ = await create_key(manual, bucket="models", prefix="flux/")
    assert (await s3_call(manual, "PUT", "/models/flux/a", scoped, body=b"1")).status_code == 200
    for method, path in [("PUT", "/models/flux2/a"), ("PUT", "/cloudtuner/flux/a"), ("GET", "/models/other")]:
        refused = await s3_call(manual, method, path, scoped, body=b"1" if method == "PUT" else b"")
        assert (refused.status_code, s3_code(refused)) == (403, "AccessDenied"), path


async def test_a_bucket_named_credentials_still_works_for_s3(manual: RunningApp) -> None:
    key, _ = await create_key(manual)
    assert (await s3_call(manual, "PUT", "/credentials", key)).status_code == 200
    assert (await s3_call(manual, "PUT", "/credentials/x", key, body=b"data")).status_code == 200
    listed = await s3_call(manual, "GET", "/credentials", key)
    assert listed.status_code == 200
    assert "<Key>x</Key>" in listed.text
    deleted = await s3_call(manual, "DELETE", "/credentials/x", key)
    assert deleted.status_code == 204
    # ...while the JSON API under the same path answers unsigned requests.
    api = await manual.client.get(CREDENTIALS)
    assert api.headers["content-type"] == "application/json"


async def test_paths_outside_the_mount(manual: RunningApp) -> None:
    reply = await manual.client.get("/api/cloud/storagex")
    assert (reply.status_code, reply.json()["code"]) == (404, "route_not_found")


async def test_encoded_traversal_is_refused(manual: RunningApp) -> None:
    key, _ = await create_key(manual)
    for raw_key in ["%2e%2e/%2e%2e/x", "..%2f..%2fx", "%252e%252e%252fx", "a/%2e%2e/%2e%2e/%2e%2e/x"]:
        reply = await s3_call(manual, "PUT", f"/cloudtuner/{raw_key}", key, body=b"escaped")
        assert reply.status_code == 400, (raw_key, reply.text)
    data_dir = manual.ctx.settings.data_dir
    escaped = [p for p in data_dir.parent.rglob("*") if p.is_file() and p.read_bytes() == b"escaped"]
    assert escaped == []


async def test_streamed_upload_is_not_buffered(manual: RunningApp) -> None:
    """A chunked body reaches the store as a stream (the adapter never reads it whole)."""
    key, _ = await create_key(manual)
    pieces = [b"x" * 65536 for _ in range(40)]

    async def body() -> AsyncIterator[bytes]:
        for piece in pieces:
            yield piece

    url = f"{BASE_URL}{MOUNT}/cloudtuner/streamed.bin"
    headers, _ = signed(url, "PUT", key=key.access_key_id, secret=key.secret, payload_hash="UNSIGNED-PAYLOAD")
    headers["Content-Length"] = str(sum(map(len, pieces)))
    reply = await manual.client.request("PUT", url, headers=headers, content=body())
    assert reply.status_code == 200, reply.text
    stored = manual.ctx.settings.outputs_dir / "cloudtuner" / "streamed.bin"
    assert stored.stat().st_size == 40 * 65536


def test_mount_is_in_the_public_routes() -> None:
    from cloudtuner.api.deps import PUBLIC_ROUTES
    from cloudtuner.api.routes.storage import S3_ROUTE_PATHS

    assert set(S3_ROUTE_PATHS) <= PUBLIC_ROUTES


async def test_a_download_stops_when_the_client_goes_away(manual: RunningApp) -> None:
    """The adapter stops reading the file once the client disconnects (not only when writes fail)."""
    key, _ = await create_key(manual)
    assert (await s3_call(manual, "PUT", "/cloudtuner/big.bin", key, body=b"x" * (8 * 1024 * 1024))).status_code == 200
    url = f"{BASE_URL}{MOUNT}/cloudtuner/big.bin"
    headers, _ = signed(url, "GET", key=key.access_key_id, secret=key.secret)
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/api/cloud/storage/cloudtuner/big.bin",
        "raw_path": b"/api/cloud/storage/cloudtuner/big.bin",
        "root_path": "",
        "query_string": b"",
        "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()],
        "app": manual.app,
    }
    went_away = asyncio.Event()
    requests = iter([{"type": "http.request", "body": b"", "more_body": False}])
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        message = next(requests, None)
        if message is not None:
            return message
        await went_away.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and len(sent) == 2:
            went_away.set()  # the client closes the connection after the first chunk
        await asyncio.sleep(0)

    await S3Adapter()(scope, receive, send)
    assert sent[0]["status"] == 200
    chunks = [m for m in sent if m["type"] == "http.response.body"]
    assert 1 <= len(chunks) < 8, len(chunks)
