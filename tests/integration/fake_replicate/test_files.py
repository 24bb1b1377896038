"""Files API: upload, metadata, list with cursors, delete, size limit, expiry, signed download."""

from __future__ import annotations

import hashlib
import json
import time
from datetime import datetime, timedelta

import httpx
import pytest

from tests.fakes.replicate import FakeReplicate

from .helpers import PROBLEM

FILE_NOT_FOUND = {"detail": "File not found", "status": 404}


def upload(
    api: httpx.Client, data: bytes = b"PK\x03\x04zip-bytes", name: str = "data.zip", **fields: str
) -> httpx.Response:
    return api.post("files", files={"content": (name, data, "application/zip")}, data=fields)


def parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def test_upload_returns_the_full_file_object(api: httpx.Client, fake: FakeReplicate) -> None:
    data = b"PK\x03\x04" + bytes(range(200))
    reply = upload(api, data, metadata=json.dumps({"job": "abc"}))
    assert reply.status_code == 201
    assert reply.headers["content-type"] == "application/json; charset=UTF-8"
    body = reply.json()
    assert set(body) == {
        "id",
        "name",
        "content_type",
        "size",
        "etag",
        "checksums",
        "metadata",
        "created_at",
        "expires_at",
        "urls",
    }
    assert body["name"] == "data.zip"
    assert body["content_type"] == "application/zip"
    assert body["size"] == len(data)
    assert body["etag"] == hashlib.md5(data).hexdigest()
    assert body["checksums"] == {"sha256": hashlib.sha256(data).hexdigest(), "md5": hashlib.md5(data).hexdigest()}
    assert body["metadata"] == {"job": "abc"}
    assert body["urls"] == {"get": f"{fake.base_url}/files/{body['id']}"}
    assert body["created_at"].endswith("Z")
    assert len(body["created_at"]) == len("2024-08-22T12:26:51.079Z")
    assert parse(body["expires_at"]) - parse(body["created_at"]) == timedelta(hours=24)
    assert api.get(body["urls"]["get"]).json() == body


def test_part_type_defaults_and_override_fields(api: httpx.Client) -> None:
    plain = api.post("files", files={"content": ("notes.txt", b"hello")}).json()
    assert plain["content_type"] == "text/plain"
    assert plain["metadata"] == {}
    renamed = api.post(
        "files",
        files={
            "content": ("x.bin", b"hello", "application/octet-stream"),
            "metadata": ("blob", b'{"via": "js"}', "application/json"),
        },
        data={"filename": "renamed.tar", "type": "application/x-tar"},
    ).json()
    assert (renamed["name"], renamed["content_type"], renamed["metadata"]) == (
        "renamed.tar",
        "application/x-tar",
        {"via": "js"},
    )


def test_upload_without_a_content_part_is_refused(api: httpx.Client, fake: FakeReplicate) -> None:
    reply = api.post("files", files={"file": ("data.zip", b"PK", "application/zip")})
    assert reply.status_code == 422
    assert reply.headers["content-type"] == PROBLEM
    assert reply.json()["invalid_fields"] == [{"type": "required", "field": "", "description": "content is required"}]
    assert api.post("files", json={"content": "x"}).status_code == 400
    assert api.get("files").json()["results"] == []


def test_size_limit_is_inclusive_and_configurable(api: httpx.Client, fake: FakeReplicate) -> None:
    assert fake.config()["file_size_limit"] == 100 * 1024 * 1024
    fake.configure(file_size_limit=16)
    assert upload(api, b"x" * 16).status_code == 201
    reply = upload(api, b"x" * 17)
    assert reply.status_code == 413
    assert reply.headers["content-type"] == PROBLEM
    assert reply.json() == {
        "title": "Content Too Large",
        "detail": "Files must be less than 100MB in size",
        "status": 413,
    }


def test_list_is_newest_first_with_absolute_cursor_links(api: httpx.Client, fake: FakeReplicate) -> None:
    fake.configure(page_size_other=2)
    ids = [upload(api, name=f"f{i}.zip").json()["id"] for i in range(5)]
    first = api.get("files").json()
    assert [f["id"] for f in first["results"]] == ids[::-1][:2]
    assert first["previous"] is None
    assert first["next"].startswith(f"{fake.base_url}/files?cursor=")
    second = api.get(first["next"]).json()
    third = api.get(second["next"]).json()
    assert [f["id"] for f in second["results"] + third["results"]] == ids[::-1][2:]
    assert third["next"] is None
    back = api.get(third["previous"]).json()
    assert back["results"] == second["results"]
    assert api.get("files", params={"cursor": "not-a-cursor"}).status_code == 400


def test_delete_gives_204_then_404(api: httpx.Client) -> None:
    file_id = upload(api).json()["id"]
    reply = api.delete(f"files/{file_id}")
    assert reply.status_code == 204
    assert reply.content == b""
    assert reply.headers["content-type"].startswith("text/plain")
    for call in (api.get, api.delete):
        gone = call(f"files/{file_id}")
        assert gone.status_code == 404
        assert gone.json() == FILE_NOT_FOUND


def test_files_expire_after_the_configured_retention(api: httpx.Client, fake: FakeReplicate) -> None:
    fake.configure(file_retention_seconds=0.2)
    body = upload(api).json()
    assert parse(body["expires_at"]) - parse(body["created_at"]) == timedelta(milliseconds=200)
    fake.wait_until(lambda: api.get(f"files/{body['id']}").status_code == 404, timeout=5, what="file expiry")
    assert api.get("files").json()["results"] == []


def test_signed_download_serves_the_bytes_without_a_token(api: httpx.Client, fake: FakeReplicate) -> None:
    data = bytes(range(256)) * 4
    file_id = upload(api, data).json()["id"]
    url = fake.file_download_url(file_id)
    assert url.startswith(f"{fake.base_url}/files/{file_id}/download?owner=cloudtuner-test&expiry=")
    reply = httpx.get(url)
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/octet-stream"
    assert reply.content == data
    tampered = url.replace("signature=", "signature=AA")
    assert httpx.get(tampered).status_code == 403
    expired = httpx.get(
        url.split("?")[0], params={"owner": "cloudtuner-test", "expiry": int(time.time()) - 1, "signature": "x"}
    )
    assert expired.status_code == 403
    api.delete(f"files/{file_id}")
    assert httpx.get(url).status_code == 404


@pytest.mark.parametrize(("style", "length"), [("base64-uuid", 48), ("base32", 26)])
def test_file_id_style_is_configurable(api: httpx.Client, fake: FakeReplicate, style: str, length: int) -> None:
    fake.configure(file_id_style=style)
    file_id = upload(api).json()["id"]
    assert len(file_id) == length
    assert api.get(f"files/{file_id}").status_code == 200
