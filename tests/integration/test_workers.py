"""The worker admin API and the worker protocol, driven in process (no worker process)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import httpx

from tests.fakes.scripted_provider import ScriptedProvider
from tests.integration.conftest import INLINE_JOB, RunningApp, make_settings, start_app
from tests.support.waiting import wait_until

SUBMIT = "/api/cloud/jobs/submit?provider=worker"
ADMIN = "/api/admin/workers"


def dataset(tmp_path: Path) -> list[dict[str, Any]]:
    folder = tmp_path / "images"
    folder.mkdir(exist_ok=True)
    (folder / "a.png").write_bytes(b"\x89PNG fake")
    (folder / "a.txt").write_text("a photo")
    return [{**INLINE_JOB["dataloader_config"][0], "instance_data_dir": str(folder)}]


async def create_worker(client: httpx.AsyncClient, name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    reply = await client.post(ADMIN, json={"name": name, "labels": labels or {}})
    assert reply.status_code == 201, reply.text
    body: dict[str, Any] = reply.json()
    return body


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def submit(running: RunningApp, tmp_path: Path, **config: Any) -> str:
    body = {**INLINE_JOB, "config": {**INLINE_JOB["config"], **config}, "dataloader_config": dataset(tmp_path)}
    reply = await running.client.post(SUBMIT, json=body)
    assert reply.status_code == 202, reply.text
    job_id: str = reply.json()["job_id"]
    return job_id


async def job_of(client: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    job: dict[str, Any] = (await client.get(f"/api/cloud/jobs/{job_id}")).json()["job"]
    return job


async def claim(client: httpx.AsyncClient, token: str, wait: float = 5.0) -> dict[str, Any]:
    reply = await client.post("/api/worker/claim", json={"wait_seconds": wait}, headers=auth(token))
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


async def register(client: httpx.AsyncClient, token: str, **body: Any) -> dict[str, Any]:
    reply = await client.post("/api/worker/register", json=body, headers=auth(token))
    assert reply.status_code == 200, reply.text
    result: dict[str, Any] = reply.json()
    return result


async def test_admin_creates_lists_rotates_drains_and_deletes(running: RunningApp) -> None:
    created = await create_worker(running.client, "gpu-box-1", {"gpu": "a100"})
    token = created["token"]
    assert token.startswith("ctw_")
    assert created["command"].startswith("cloudtuner worker --orchestrator-url http")
    assert f"--worker-token {token}" in created["command"]
    assert created["worker"]["status"] == "connecting"
    assert (await running.client.post(ADMIN, json={"name": "gpu-box-1"})).json()["code"] == "worker_name_taken"

    listed = (await running.client.get(ADMIN)).json()["workers"]
    assert [w["name"] for w in listed] == ["gpu-box-1"]
    assert "token" not in listed[0]

    await register(running.client, token, gpus=[{"name": "A100", "memory_mb": 81920}], labels={"zone": "eu"})
    shown = (await running.client.get(f"{ADMIN}/gpu-box-1")).json()["worker"]
    assert shown["status"] == "idle" and shown["labels"] == {"gpu": "a100", "zone": "eu"}
    assert shown["gpus"] == [{"name": "A100", "memory_mb": 81920}] and shown["last_heartbeat_at"]

    rotated = (await running.client.post(f"{ADMIN}/gpu-box-1/rotate")).json()
    assert rotated["token"] != token
    old = await running.client.post("/api/worker/claim", json={"wait_seconds": 0}, headers=auth(token))
    assert old.status_code == 401 and old.json()["code"] == "invalid_worker_token"

    drained = (await running.client.post(f"{ADMIN}/gpu-box-1/drain")).json()["worker"]
    assert drained["status"] == "draining"
    assert (await claim(running.client, rotated["token"], 0))["drain"] is True

    revoked = (await running.client.post(f"{ADMIN}/gpu-box-1/revoke")).json()["worker"]
    assert revoked["status"] == "revoked"
    gone = await running.client.post("/api/worker/claim", json={"wait_seconds": 0}, headers=auth(rotated["token"]))
    assert gone.status_code == 401

    assert (await running.client.delete(f"{ADMIN}/gpu-box-1")).status_code == 200
    assert (await running.client.get(f"{ADMIN}/gpu-box-1")).json()["code"] == "worker_not_found"


async def test_a_job_runs_through_the_protocol(running: RunningApp, tmp_path: Path) -> None:
    token = (await create_worker(running.client, "w1"))["token"]
    await register(running.client, token)
    job_id = await submit(running, tmp_path)
    body = await claim(running.client, token)
    job = body["job"]
    assert job["job_id"] == job_id and job["has_datasets"] is True
    assert job["storage"]["prefix"] == f"jobs/{job_id}/" and job["storage"]["access_key_id"]
    lease = job["lease_token"]

    fetched = await running.client.get(
        f"/api/worker/jobs/{job_id}/datasets", params={"lease_token": lease}, headers=auth(token)
    )
    assert fetched.status_code == 200, fetched.text
    assert zipfile.ZipFile(io.BytesIO(fetched.content)).testzip() is None
    assert fetched.headers["x-cloudtuner-extract-root"] == "/datasets"
    assert "content-length" not in fetched.headers, "packed while it is sent"
    assert not (running.ctx.settings.data_dir / "packages").exists(), "no archive file on the server"

    beat = await running.client.post(
        f"/api/worker/jobs/{job_id}/heartbeat", json={"lease_token": lease, "running": True}, headers=auth(token)
    )
    assert beat.json()["keep_running"] is True
    assert (await job_of(running.client, job_id))["status"] == "running"
    shown = (await running.client.get(f"{ADMIN}/w1")).json()["worker"]
    assert shown["status"] == "busy" and shown["current_job_id"] == job_id

    text = "Training: 50%|#####     | 2/4 [00:01<00:01, step_loss=0.25]\n"
    logs = await running.client.post(
        f"/api/worker/jobs/{job_id}/logs", json={"lease_token": lease, "text": text}, headers=auth(token)
    )
    assert logs.json()["accepted"] is True
    assert "2/4" in (await running.client.get(f"/api/cloud/jobs/{job_id}/logs")).json()["logs"]

    done = await running.client.post(
        f"/api/worker/jobs/{job_id}/result", json={"lease_token": lease, "status": "completed"}, headers=auth(token)
    )
    assert done.json()["accepted"] is True
    assert (await job_of(running.client, job_id))["status"] == "completed"
    late = await running.client.post(
        f"/api/worker/jobs/{job_id}/result", json={"lease_token": lease, "status": "failed"}, headers=auth(token)
    )
    assert late.json()["accepted"] is False
    assert (await job_of(running.client, job_id))["status"] == "completed"


async def test_labels_and_gpus_are_matched(running: RunningApp, tmp_path: Path) -> None:
    small = (await create_worker(running.client, "small", {"gpu": "t4"}))["token"]
    big = (await create_worker(running.client, "big", {"gpu": "a100-80g"}))["token"]
    await register(running.client, small, gpus=[{"name": "T4", "memory_mb": 16384}])
    await register(running.client, big, gpus=[{"name": "A100", "memory_mb": 81920}] * 2)
    job_id = await submit(running, tmp_path, worker_labels="gpu=a100*", worker_gpus=2, worker_min_vram_gb=40)
    assert (await claim(running.client, small, 0.3))["job"] is None
    assert (await claim(running.client, big))["job"]["job_id"] == job_id


async def test_cancel_reaches_the_worker_on_its_next_heartbeat(running: RunningApp, tmp_path: Path) -> None:
    token = (await create_worker(running.client, "w1"))["token"]
    await register(running.client, token)
    job_id = await submit(running, tmp_path)
    lease = (await claim(running.client, token))["job"]["lease_token"]
    assert (await running.client.post(f"/api/cloud/jobs/{job_id}/cancel")).status_code == 200
    await wait_until(lambda: job_of(running.client, job_id), lambda job: job["status"] == "cancelled")
    beat = await running.client.post(
        f"/api/worker/jobs/{job_id}/heartbeat", json={"lease_token": lease, "running": True}, headers=auth(token)
    )
    assert beat.json()["keep_running"] is False
    ack = await running.client.post(
        f"/api/worker/jobs/{job_id}/result", json={"lease_token": lease, "status": "cancelled"}, headers=auth(token)
    )
    assert ack.json()["accepted"] is True
    assert (await job_of(running.client, job_id))["status"] == "cancelled"


async def test_a_lost_worker_requeues_then_fails_the_job(tmp_path: Path, database_url: str) -> None:
    settings = make_settings(tmp_path, database_url, worker_max_attempts=2, worker_lease_seconds=0.5)
    async with start_app(settings, ScriptedProvider()) as running:
        token = (await create_worker(running.client, "w1"))["token"]
        await register(running.client, token)
        job_id = await submit(running, tmp_path)
        first = (await claim(running.client, token))["job"]["lease_token"]
        # No heartbeat: the lease runs out, the job is requeued, dispatched again and claimable.
        second = await wait_until(lambda: claim(running.client, token, 0.5), lambda body: body["job"] is not None)
        assert second["job"]["job_id"] == job_id and second["job"]["lease_token"] != first
        events = (await job_of(running.client, job_id)).get("dispatch_attempts")
        assert events in (None, 2)
        # A late report from the first, lost claim is ignored.
        late = await running.client.post(
            f"/api/worker/jobs/{job_id}/result", json={"lease_token": first, "status": "completed"}, headers=auth(token)
        )
        assert late.json()["accepted"] is False
        job = await wait_until(lambda: job_of(running.client, job_id), lambda job: job["status"] == "failed")
        assert "stopped heartbeating" in job["error"]


async def test_a_restarted_worker_gives_its_job_up(running: RunningApp, tmp_path: Path) -> None:
    token = (await create_worker(running.client, "w1"))["token"]
    await register(running.client, token)
    job_id = await submit(running, tmp_path)
    assert (await claim(running.client, token))["job"]["job_id"] == job_id
    again = await register(running.client, token)
    assert again["abandoned_job_ids"] == [job_id]
    assert (await claim(running.client, token))["job"]["job_id"] == job_id
