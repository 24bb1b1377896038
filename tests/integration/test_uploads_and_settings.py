"""Local datasets and consent, Cloud and provider settings, saved tokens."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from cloudtuner.db.tables import SecretRow
from tests.fakes.scripted_provider import ScriptedProvider
from tests.integration.conftest import RunningApp, make_settings, start_app
from tests.support.waiting import wait_until

SUBMIT = "/api/cloud/jobs/submit?provider=uploader"


def make_dataset(root: Path) -> Path:
    folder = root / "my-dataset"
    folder.mkdir(parents=True)
    for index in range(3):
        (folder / f"img{index}.png").write_bytes(b"\x89PNG" + bytes([index]) * 2000)
        (folder / f"img{index}.txt").write_text(f"a photo of thing {index}")
    (folder / ".env").write_text("SECRET=1")
    (folder / "id_rsa").write_text("-----BEGIN OPENSSH PRIVATE KEY-----")
    return folder


def job_body(folder: Path, **extra: Any) -> dict[str, Any]:
    return {
        "config": {"--model_family": "flux", "--max_train_steps": 2, "--scripted_seconds": 0.2},
        "dataloader_config": [
            {"id": "training-images", "type": "local", "dataset_type": "image",
             "instance_data_dir": str(folder), "caption_strategy": "textfile", "resolution": 1024,
             "cache_dir_vae": "/cache/vae"},
        ],
        **extra,
    }  # fmt: skip


@contextlib.asynccontextmanager
async def uploading_app(tmp_path: Path, database_url: str, **provider_options: Any) -> AsyncIterator[RunningApp]:
    provider = ScriptedProvider(name="uploader", uploads=True, webhooks=True, **provider_options)
    settings = make_settings(tmp_path, database_url, public_url="https://ct.example.org")
    async with start_app(settings, provider) as app:
        yield app


async def test_consent_is_asked_then_the_archive_is_built_and_handed_over(tmp_path: Path, database_url: str) -> None:
    folder = make_dataset(tmp_path)
    async with uploading_app(tmp_path, database_url) as app:
        asked = await app.client.post(SUBMIT, json=job_body(folder))
        assert asked.status_code == 428
        reply = asked.json()
        assert reply["code"] == "upload_consent_required"
        summary = reply["upload_summary"]
        [dataset] = summary["datasets"]
        assert dataset["dataset_id"] == "training-images"
        assert dataset["image_count"] == 3 and dataset["captions_found"] == 3
        excluded = {item["path"]: item["reason"] for item in dataset["excluded"]}
        assert excluded == {".env": "environment_file", "id_rsa": "private_key"}
        assert (await app.client.get("/api/cloud/jobs")).json()["jobs"] == [], "nothing was created"

        accepted = await app.client.post(SUBMIT, json=job_body(folder, upload_consent=True))
        assert accepted.status_code == 202
        job_id = accepted.json()["job_id"]
        assert accepted.json()["job"]["upload_summary"]["file_count"] == 6

        async def detail() -> dict[str, Any]:
            job: dict[str, Any] = (await app.client.get(f"/api/cloud/jobs/{job_id}")).json()["job"]
            return job

        job = await wait_until(detail, lambda j: j["status"] == "completed")
        assert [e["to_status"] for e in job["events"]] == ["queued", "uploading", "starting", "running", "completed"]
        [archive] = app.provider.received_archives
        assert sorted(archive["names"]) == sorted(
            f"datasets/training-images/img{i}.{ext}" for i in range(3) for ext in ("png", "txt")
        )
        [sent] = archive["dataloader"]
        assert sent["instance_data_dir"] == "/trainer/data/datasets/training-images"
        assert sent["cache_dir_vae"].startswith("/trainer/data/cache/")
        assert archive["webhook_url"] == f"https://ct.example.org/api/webhooks/uploader?job_id={job_id}"
        assert not list((app.ctx.settings.data_dir / "packages").glob("*.zip")), "the archive is removed"


async def test_consent_modes(tmp_path: Path, database_url: str) -> None:
    folder = make_dataset(tmp_path)
    async with uploading_app(tmp_path, database_url) as app:
        assert (await app.client.get("/api/cloud/settings")).json()["upload_consent"] == "always_ask"
        changed = await app.client.put("/api/cloud/settings", json={"upload_consent": "always_allow"})
        assert changed.json()["upload_consent"] == "always_allow"
        assert (await app.client.post(SUBMIT, json=job_body(folder))).status_code == 202

        await app.client.put("/api/cloud/settings", json={"upload_consent": "never_upload"})
        refused = await app.client.post(SUBMIT, json=job_body(folder, upload_consent=True))
        assert (refused.status_code, refused.json()["code"]) == (403, "uploads_disabled")
        remote_only = {"config": {}, "dataloader_config": [{"id": "s3", "type": "aws", "aws_bucket_name": "b"}]}
        assert (await app.client.post(SUBMIT, json=remote_only)).status_code == 202, "nothing local to upload"


async def test_over_the_limit_is_refused_before_anything_is_sent(tmp_path: Path, database_url: str) -> None:
    folder = make_dataset(tmp_path)
    async with uploading_app(tmp_path, database_url, max_upload_bytes=4000) as app:
        preview = (await app.client.post("/api/cloud/jobs/preview?provider=uploader", json=job_body(folder))).json()
        assert preview["upload_summary"]["fits_upload_limit"] is False
        refused = await app.client.post(SUBMIT, json=job_body(folder, upload_consent=True))
        assert (refused.status_code, refused.json()["code"]) == (400, "upload_too_large")
        assert "over" in refused.json()["detail"]
        assert app.provider.run_job_calls == 0


async def test_preview_and_missing_folders(tmp_path: Path, database_url: str) -> None:
    folder = make_dataset(tmp_path)
    async with uploading_app(tmp_path, database_url) as app:
        preview = await app.client.post("/api/cloud/jobs/preview?provider=uploader", json=job_body(folder))
        assert preview.status_code == 200
        body = preview.json()
        assert body["uploads_local_data"] is True and body["needs_upload_consent"] is True
        assert body["upload_summary"]["image_count"] == 3
        missing = job_body(tmp_path / "nope", upload_consent=True)
        refused = await app.client.post(SUBMIT, json=missing)
        assert (refused.status_code, refused.json()["code"]) == (400, "dataset_not_found")
        assert "training-images" in refused.json()["detail"]


async def test_cloud_and_provider_settings(running: RunningApp) -> None:
    client = running.client
    settings = (await client.put("/api/cloud/settings", json={"webhook_url": "https://abc123.ngrok.io/"})).json()
    assert settings["public_url"] == "https://abc123.ngrok.io"
    assert settings["effective_public_url"] == "https://abc123.ngrok.io"
    cleared = (await client.put("/api/cloud/settings", json={"public_url": ""})).json()
    assert cleared["public_url"] is None
    for bad in ({"public_url": "ftp://x"}, {"public_url": "https://x/path"}, {"upload_consent": "maybe"},
                {"trusted_proxies": ["not-an-ip"]}, {"surprise": 1}):  # fmt: skip
        response = await client.put("/api/cloud/settings", json=bad)
        assert response.status_code == 422, bad

    ips = {"webhook_allowed_ips": ["34.82.0.0/16", "35.185.0.0/16"]}
    provider = (await client.put("/api/cloud/providers/scripted", json=ips)).json()
    assert provider["settings"]["webhook_allowed_ips"] == ["34.82.0.0/16", "35.185.0.0/16"]
    assert (await client.get("/api/cloud/providers/scripted")).json()["settings"] == provider["settings"]
    bad_ip = await client.put("/api/cloud/providers/scripted", json={"webhook_allowed_ips": ["34.82.0.0/99"]})
    assert bad_ip.status_code == 422
    unknown = await client.put("/api/cloud/providers/nope", json=ips)
    assert (unknown.status_code, unknown.json()["code"]) == (400, "unknown_provider")
    listed = (await client.get("/api/cloud/providers")).json()["providers"]
    assert [p["provider"] for p in listed] == ["local", "replicate", "scripted", "worker"]


async def test_tokens_are_stored_encrypted_and_never_shown(running: RunningApp) -> None:
    client = running.client
    token = "r8_supersecretvalue1234567890"
    before = (await client.get("/api/cloud/providers/scripted")).json()
    assert before["token"] == {"configured": False, "source": None}
    saved = await client.put("/api/cloud/providers/scripted/token", json={"token": f"  {token}\n"})
    assert saved.status_code == 200
    assert saved.json()["token"] == {"configured": True, "source": "saved"}
    replies = [saved.text, (await client.get("/api/cloud/providers/scripted")).text,
               (await client.get("/api/cloud/providers")).text]  # fmt: skip
    assert all(token not in reply for reply in replies)
    async with running.ctx.db.read() as session:
        [row] = (await session.scalars(select(SecretRow))).all()
    assert token not in row.ciphertext
    assert await running.ctx.secrets.get("provider:scripted:token") == token
    key_file = running.ctx.settings.secret_key_file
    assert key_file.stat().st_mode & 0o777 == 0o600

    deleted = (await client.delete("/api/cloud/providers/scripted/token")).json()
    assert deleted["token"] == {"configured": False, "source": None}
    assert (await client.put("/api/cloud/providers/scripted/token", json={"token": "   "})).status_code == 422


async def test_validate(running: RunningApp) -> None:
    ok = (await running.client.get("/api/cloud/providers/scripted/validate")).json()
    assert ok == {
        "success": True,
        "valid": True,
        "provider": "scripted",
        "account": {"username": "scripted", "type": "user"},
    }
    running.provider.unavailable_next_calls = 1
    down = (await running.client.get("/api/cloud/providers/scripted/validate")).json()
    assert down["valid"] is False and down["code"] == "provider_unavailable"


@pytest.mark.parametrize("secret_key", ["a shared passphrase"])
async def test_secret_key_from_settings(tmp_path: Path, database_url: str, secret_key: str) -> None:
    settings = make_settings(tmp_path, database_url, secret_key=secret_key)
    async with start_app(settings, ScriptedProvider()) as app:
        await app.client.put("/api/cloud/providers/scripted/token", json={"token": "r8_abc"})
        assert await app.ctx.secrets.get("provider:scripted:token") == "r8_abc"
        assert not settings.secret_key_file.exists(), "no key file when the key is given"
