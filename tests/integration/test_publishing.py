"""Publishing settings: checked at submit, secrets sealed and never shown, handed to the provider at
dispatch (local download with the job's own key and the public URL), and the job's delivery row."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import select

from cloudtuner.db.tables import JobDeliveryRow, JobRow, StorageCredentialRow
from cloudtuner.providers.base import CloudJobInfo, DeliveryTarget, ProviderCapabilities, RunRequest
from tests.fakes.scripted_provider import ScriptedProvider
from tests.integration.conftest import RunningApp, inline_job, make_settings, start_app
from tests.support.waiting import wait_until

SECRET = "s3-secret-that-must-not-leak"
HUB_TOKEN = "hf_token_that_must_not_leak"


class DeliveringProvider(ScriptedProvider):
    """A scripted provider whose runs can deliver to the Hub and S3; it keeps the deliveries it got."""

    def __init__(self, *, reaches_server: bool = False) -> None:
        super().__init__("delivering")
        self._reaches_server = reaches_server
        self.deliveries: dict[str, DeliveryTarget | None] = {}

    @property
    def capabilities(self) -> ProviderCapabilities:
        base = super().capabilities
        return ProviderCapabilities(
            cost_tracking=base.cost_tracking,
            live_logs=base.live_logs,
            publishes_to=frozenset({"huggingface", "s3"}),
            reaches_server=self._reaches_server,
        )

    async def run_job(self, request: RunRequest) -> CloudJobInfo:
        self.deliveries[request.job_id] = request.delivery
        return await super().run_job(request)


@pytest.fixture
async def app(tmp_path: Path, database_url: str) -> AsyncIterator[RunningApp]:
    settings = make_settings(tmp_path, database_url, hf_token=SecretStr("hf_server_token"))
    async with start_app(settings, DeliveringProvider()) as running:
        running.ctx.providers.add(ScriptedProvider("plain"))
        yield running


async def submit(running: RunningApp, publishing: dict[str, Any] | None, provider: str = "delivering") -> Any:
    body = inline_job(**{"--scripted_seconds": 0.1})
    if publishing is not None:
        body["publishing"] = publishing
    return await running.client.post("/api/cloud/jobs/submit", params={"provider": provider}, json=body)


async def dispatched(running: RunningApp, job_id: str) -> DeliveryTarget | None:
    provider = running.ctx.providers.get("delivering")
    assert isinstance(provider, DeliveringProvider)
    await wait_until(lambda: _has(provider, job_id), bool, timeout=15)
    return provider.deliveries[job_id]


async def _has(provider: DeliveringProvider, job_id: str) -> bool:
    return job_id in provider.deliveries


S3 = {
    "destination": "s3",
    "s3_endpoint_url": "http://127.0.0.1:9",
    "s3_bucket": "models",
    "s3_base_path": "/flux/loras/",
    "s3_access_key": "AKIDEXAMPLE",
    "s3_secret_key": SECRET,
}


async def test_s3_secrets_are_sealed_never_shown_and_opened_at_dispatch(app: RunningApp) -> None:
    reply = await submit(app, S3)
    assert reply.status_code == 202, reply.text
    job_id = reply.json()["job_id"]
    assert SECRET not in reply.text and "AKIDEXAMPLE" not in reply.text
    view = reply.json()["job"]["publishing"]
    assert view["destination"] == "s3" and view["s3_base_path"] == f"flux/loras/{job_id}", view
    assert view["stored_secrets"] == ["s3_access_key", "s3_secret_key"], view

    async with app.ctx.db.read() as session:
        stored = (await session.execute(select(JobRow.publishing).where(JobRow.id == job_id))).scalar_one()
    assert SECRET not in json.dumps(stored) and "AKIDEXAMPLE" not in json.dumps(stored), stored
    assert app.ctx.secrets.box.decrypt(stored["sealed"]["s3_secret_key"]) == SECRET

    delivery = await dispatched(app, job_id)
    assert delivery is not None and delivery.s3 is not None and delivery.destination == "s3"
    assert (delivery.s3.bucket, delivery.s3.prefix) == ("models", f"flux/loras/{job_id}")
    assert (delivery.s3.access_key_id, delivery.s3.secret_access_key) == ("AKIDEXAMPLE", SECRET)
    assert SECRET not in repr(delivery)

    detail = (await app.client.get(f"/api/cloud/jobs/{job_id}")).text
    assert SECRET not in detail and "AKIDEXAMPLE" not in detail

    # Once the job ends its bucket is listed; an unreachable endpoint is retried, the reason kept.
    async def delivery_row() -> JobDeliveryRow | None:
        async with app.ctx.db.read() as session:
            return await session.get(JobDeliveryRow, job_id)

    row = await wait_until(delivery_row, lambda r: r is not None and r.attempts >= 1, timeout=20)
    assert row is not None and row.destination == "s3" and row.state == "pending"
    assert row.error is not None and "Cannot reach the S3 endpoint" in row.error and SECRET not in row.error
    listing = (await app.client.get(f"/api/cloud/jobs/{job_id}/artifacts")).json()
    assert listing["artifacts"] == [] and listing["delivery"]["location"] == f"s3://models/flux/loras/{job_id}/"


async def test_local_download_needs_a_public_url_and_gets_the_jobs_own_key(app: RunningApp) -> None:
    refused = await submit(app, {"destination": "local"})
    assert (refused.status_code, refused.json()["code"]) == (400, "public_url_required"), refused.text

    set_url = await app.client.put("/api/cloud/settings", json={"public_url": "https://tunnel.example"})
    assert set_url.status_code == 200, set_url.text
    reply = await submit(app, {"destination": "local"})
    assert reply.status_code == 202, reply.text
    job_id = reply.json()["job_id"]
    delivery = await dispatched(app, job_id)
    assert delivery is not None and delivery.s3 is not None and delivery.destination == "local"
    assert delivery.s3.endpoint_url == "https://tunnel.example/api/cloud/storage"
    assert (delivery.s3.bucket, delivery.s3.prefix) == ("cloudtuner", f"jobs/{job_id}")
    async with app.ctx.db.read() as session:
        key = await session.get(StorageCredentialRow, delivery.s3.access_key_id)
    assert key is not None and key.job_id == job_id and key.prefix == f"jobs/{job_id}/"

    # "Download only": nothing asked, a public URL set: delivered back here as well.
    auto = (await submit(app, None)).json()["job_id"]
    auto_delivery = await dispatched(app, auto)
    assert auto_delivery is not None and auto_delivery.destination == "local"
    assert auto_delivery.s3 is not None and auto_delivery.s3.prefix == f"jobs/{auto}"
    # Asked for nothing at all: nowhere.
    none = (await submit(app, {"destination": "none"})).json()["job_id"]
    assert await dispatched(app, none) is None


async def test_hub_token_from_the_server_or_the_job(app: RunningApp) -> None:
    own = await submit(app, {"hub_model_id": "me/my-lora", "private": False, "hf_token": HUB_TOKEN})
    assert own.status_code == 202, own.text
    assert own.json()["job"]["publishing"]["destination"] == "huggingface"
    delivery = await dispatched(app, own.json()["job_id"])
    assert delivery is not None and delivery.hub is not None
    assert (delivery.hub.repo_id, delivery.hub.token, delivery.hub.private) == ("me/my-lora", HUB_TOKEN, False)

    # The config pushes to the Hub itself: the server's HF_TOKEN is used.
    body = inline_job(**{"--push_to_hub": True, "--hub_model_id": "me/other", "--scripted_seconds": 0.1})
    from_config = await app.client.post("/api/cloud/jobs/submit", params={"provider": "delivering"}, json=body)
    assert from_config.status_code == 202, from_config.text
    delivery = await dispatched(app, from_config.json()["job_id"])
    assert delivery is not None and delivery.hub is not None
    assert (delivery.hub.repo_id, delivery.hub.token, delivery.hub.private) == ("me/other", "hf_server_token", True)


@pytest.mark.parametrize(
    ("publishing", "provider", "status", "code"),
    [
        ({"destination": "huggingface"}, "delivering", 400, "invalid_publishing"),
        ({"hub_model_id": "not a repo"}, "delivering", 400, "invalid_publishing"),
        ({"hub_model_id": "../evil"}, "delivering", 400, "invalid_publishing"),
        ({**S3, "s3_bucket": "Bad_Bucket"}, "delivering", 400, "invalid_publishing"),
        ({**S3, "s3_endpoint_url": "ftp://x"}, "delivering", 400, "invalid_publishing"),
        ({**S3, "s3_base_path": "a/../../b"}, "delivering", 400, "invalid_publishing"),
        ({k: v for k, v in S3.items() if k != "s3_secret_key"}, "delivering", 400, "invalid_publishing"),
        ({**S3, "hub_model_id": "me/lora"}, "delivering", 400, "invalid_publishing"),
        (S3, "plain", 400, "publishing_unsupported"),
        ({"hub_model_id": "me/lora"}, "plain", 400, "publishing_unsupported"),
        ({"destination": "ftp"}, "delivering", 422, "validation_error"),
        ({"s3_bucket": "models", "colour": "blue"}, "delivering", 422, "validation_error"),
    ],
)
async def test_undeliverable_submissions_are_refused(
    app: RunningApp, publishing: dict[str, Any], provider: str, status: int, code: str
) -> None:
    reply = await submit(app, publishing, provider)
    assert (reply.status_code, reply.json()["code"]) == (status, code), reply.text
    assert SECRET not in reply.text
    assert (await app.client.get("/api/cloud/jobs")).json()["jobs"] == []


async def test_hub_needs_a_token(tmp_path: Path, database_url: str) -> None:
    async with start_app(make_settings(tmp_path, database_url), DeliveringProvider()) as running:
        reply = await submit(running, {"hub_model_id": "me/lora"})
        assert (reply.status_code, reply.json()["code"]) == (400, "invalid_publishing"), reply.text
        assert "HF_TOKEN" in reply.json()["detail"]


async def test_a_provider_that_reaches_the_server_needs_no_public_url(tmp_path: Path, database_url: str) -> None:
    async with start_app(make_settings(tmp_path, database_url), DeliveringProvider(reaches_server=True)) as running:
        reply = await submit(running, {"destination": "local"})
        assert reply.status_code == 202, reply.text
        provider = running.ctx.providers.get("delivering")
        assert isinstance(provider, DeliveringProvider)
        job_id = reply.json()["job_id"]
        await wait_until(lambda: _has(provider, job_id), bool, timeout=15)
        delivery = provider.deliveries[job_id]
        assert delivery is not None and delivery.s3 is not None
        assert delivery.s3.endpoint_url == "http://127.0.0.1:8001/api/cloud/storage", delivery.s3
