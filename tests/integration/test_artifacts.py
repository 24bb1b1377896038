"""The artifacts registry: writes to a job's folder of the built-in endpoint are recorded as they
happen (signed by the server's own S3 client, so its SigV4 is checked by the endpoint's verifier),
listed, downloaded with ranges, taken out when deleted, and kept or deleted with the job."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import httpx
import pytest

from cloudtuner.core.errors import JobNotFoundError
from cloudtuner.core.permissions import Permission, Principal
from cloudtuner.services import artifacts
from cloudtuner.storage.s3client import S3Client, S3ClientError
from tests.integration.conftest import RunningApp, inline_job
from tests.support.waiting import wait_until

WEIGHTS = b"weights-" * 4096


async def finished_job(running: RunningApp) -> str:
    reply = await running.client.post(
        "/api/cloud/jobs/submit", params={"provider": "scripted"}, json=inline_job(**{"--scripted_seconds": 0.1})
    )
    assert reply.status_code == 202, reply.text
    job_id: str = reply.json()["job_id"]

    async def status() -> str:
        return str((await running.client.get(f"/api/cloud/jobs/{job_id}")).json()["job"]["status"])

    await wait_until(status, lambda value: value == "completed", timeout=15)
    return job_id


async def s3_client(running: RunningApp) -> S3Client:
    created = await running.client.post("/api/cloud/storage/credentials", json={"name": "test"})
    assert created.status_code == 201, created.text
    key = created.json()
    return S3Client(
        "http://cloudtuner.test/api/cloud/storage",
        key["access_key_id"],
        key["secret_access_key"],
        transport=httpx.ASGITransport(app=running.app),
    )


async def test_writes_to_a_jobs_folder_are_recorded_listed_downloaded_and_forgotten(running: RunningApp) -> None:
    job_id = await finished_job(running)
    folder = f"jobs/{job_id}"
    async with await s3_client(running) as s3:
        await s3.put_object("cloudtuner", f"{folder}/pytorch_lora_weights.safetensors", WEIGHTS)
        await s3.put_object("cloudtuner", f"{folder}/samples/step-10.png", b"png", content_type="image/png")
        await s3.put_object("cloudtuner", "elsewhere/not-a-job.bin", b"x")
        await s3.put_object("cloudtuner", "jobs/01zzzzzzzzzzzzzzzzzzzzzzzz/x.bin", b"no such job")
        listed = await s3.list_objects("cloudtuner", f"{folder}/")
        assert [item.key for item in listed] == [
            f"{folder}/pytorch_lora_weights.safetensors",
            f"{folder}/samples/step-10.png",
        ]
        head = await s3.head_object("cloudtuner", f"{folder}/samples/step-10.png")
        assert (head.size, head.content_type) == (3, "image/png")

        reply = (await running.client.get(f"/api/cloud/jobs/{job_id}/artifacts")).json()
        found = {item["path"]: item for item in reply["artifacts"]}
        assert set(found) == {"pytorch_lora_weights.safetensors", "samples/step-10.png"}, reply
        weights = found["pytorch_lora_weights.safetensors"]
        assert weights["kind"] == "weights" and weights["destination"] == "local"
        assert weights["sha256"] == hashlib.sha256(WEIGHTS).hexdigest()
        assert weights["size_bytes"] == len(WEIGHTS) and reply["total_bytes"] == len(WEIGHTS) + 3
        assert found["samples/step-10.png"]["kind"] == "sample"
        detail = (await running.client.get(f"/api/cloud/jobs/{job_id}")).json()["job"]
        assert [item["path"] for item in detail["artifacts"]] == sorted(found)

        whole = await running.client.get(weights["download_url"])
        assert whole.status_code == 200 and whole.content == WEIGHTS
        part = await running.client.get(weights["download_url"], headers={"Range": "bytes=-5"})
        assert (part.status_code, part.content) == (206, WEIGHTS[-5:])
        stale = await running.client.get(weights["download_url"], headers={"Range": "bytes=0-1", "If-Range": '"x"'})
        assert stale.status_code == 200 and stale.content == WEIGHTS
        head_reply = await running.client.head(weights["download_url"])
        assert head_reply.status_code == 200 and head_reply.headers["content-length"] == str(len(WEIGHTS))
        missing = await running.client.get(f"/api/cloud/jobs/{job_id}/artifacts/999999/download")
        assert (missing.status_code, missing.json()["code"]) == (404, "artifact_not_found")

        await s3.delete_object("cloudtuner", f"{folder}/samples/step-10.png")
        reply = (await running.client.get(f"/api/cloud/jobs/{job_id}/artifacts")).json()
        assert [item["path"] for item in reply["artifacts"]] == ["pytorch_lora_weights.safetensors"]

        with pytest.raises(S3ClientError) as refused:
            await s3.head_object("cloudtuner", f"{folder}/samples/step-10.png")
        assert refused.value.status == 404

    kept = (await running.client.delete(f"/api/cloud/jobs/{job_id}")).json()
    assert (kept["artifacts_deleted"], kept["artifacts_kept"]) == (0, 1), kept
    assert (running.ctx.settings.outputs_dir / "cloudtuner" / folder / "pytorch_lora_weights.safetensors").exists()


async def test_delete_with_artifacts_removes_the_jobs_folder(running: RunningApp) -> None:
    job_id = await finished_job(running)
    async with await s3_client(running) as s3:
        await s3.put_object("cloudtuner", f"jobs/{job_id}/a/b/c.safetensors", b"abc")
    gone = await running.client.delete(f"/api/cloud/jobs/{job_id}", params={"delete_artifacts": "true"})
    assert gone.status_code == 200 and gone.json()["artifacts_deleted"] == 1, gone.text
    assert not (running.ctx.settings.outputs_dir / "cloudtuner" / "jobs" / job_id).exists()
    missing = await running.client.get(f"/api/cloud/jobs/{job_id}/artifacts")
    assert (missing.status_code, missing.json()["code"]) == (404, "job_not_found")


async def test_someone_elses_artifacts_are_not_found(running: RunningApp) -> None:
    job_id = await finished_job(running)
    stranger = Principal(id="someone-else", name="x", permissions=frozenset({Permission.JOB_VIEW_OWN}))
    with pytest.raises(JobNotFoundError):
        await artifacts.list_artifacts(running.ctx, stranger, job_id)
    store = running.app.state.storage.store
    with pytest.raises(JobNotFoundError):
        await artifacts.open_local_artifact(running.ctx, stranger, job_id, 1, store)


async def test_a_file_delivered_again_updates_its_row(running: RunningApp) -> None:
    job_id = await finished_job(running)
    when = datetime(2026, 1, 1, tzinfo=UTC)
    first = artifacts.FoundFile("m.safetensors", "s3://b/k/m.safetensors", 10, when, sha256="a" * 64, etag="e1")
    again = artifacts.FoundFile("m.safetensors", "s3://b/k/m.safetensors", 12, when, sha256=None, etag="e2")
    assert await artifacts.record_files(running.ctx, job_id, "s3", [first]) == 1
    assert await artifacts.record_files(running.ctx, job_id, "s3", [again]) == 1
    assert await artifacts.record_files(running.ctx, "01zzzzzzzzzzzzzzzzzzzzzzzz", "s3", [first]) == 0
    (item,) = (await running.client.get(f"/api/cloud/jobs/{job_id}/artifacts")).json()["artifacts"]
    # The listing did not tell the hash again: the recorded one stays.
    assert (item["size_bytes"], item["etag"], item["sha256"]) == (12, "e2", "a" * 64), item
    assert item["download_url"] is None


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("pytorch_lora_weights.safetensors", "weights"),
        ("checkpoint-500/pytorch_lora_weights.safetensors", "checkpoint"),
        ("samples/step-100.png", "sample"),
        ("validation_images/a.txt", "sample"),
        ("README.md", "model_card"),
        ("config.json", "config"),
        ("notes.txt", "other"),
    ],
)
def test_artifact_kinds(path: str, kind: str) -> None:
    assert artifacts.artifact_kind(path).value == kind
