"""The job API as the seeds use it, on a real database, with the scheduler running."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.integration.conftest import INLINE_JOB, RunningApp, inline_job
from tests.support.waiting import wait_until

SUBMIT = "/api/cloud/jobs/submit?provider=scripted"


async def job_of(client: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    response = await client.get(f"/api/cloud/jobs/{job_id}")
    assert response.status_code == 200, response.text
    job: dict[str, Any] = response.json()["job"]
    return job


async def wait_for_status(client: httpx.AsyncClient, job_id: str, *statuses: str) -> dict[str, Any]:
    return await wait_until(lambda: job_of(client, job_id), lambda job: job["status"] in statuses)


async def test_inline_submission_runs_to_completion(running: RunningApp) -> None:
    # Runs for 2 s, so that a sync sees it running even on a busy machine (the timeline below
    # checks the running step; a run first seen finished would go from starting to completed).
    body = inline_job(**{"--scripted_seconds": 2.0})
    response = await running.client.post(SUBMIT, json={**body, "tracker_run_name": "api-test-run"})
    assert response.status_code == 202
    reply = response.json()
    assert reply["success"] is True
    assert reply["status"] == "queued"
    assert reply["idempotent_hit"] is False
    job_id = reply["job_id"]

    job = await wait_for_status(running.client, job_id, "completed", "failed")
    assert job["status"] == "completed"
    assert job["tracker_run_name"] == "api-test-run"
    assert job["progress"]["step"] == 4 and job["progress"]["total_steps"] == 4
    assert job["progress"]["percent"] == 100.0
    assert job["cost_usd"] > 0
    assert job["provider_job_id"].startswith("run-")
    assert job["started_at"] and job["finished_at"]
    assert job["config"]["--model_family"] == "flux"
    assert job["dataloader_config"][0]["instance_data_dir"] == "/data/datasets/my-dataset"
    assert job["config_snapshot"]["source"] == "inline" and len(job["config_snapshot"]["sha256"]) == 64
    steps = [(e["from_status"], e["to_status"]) for e in job["events"]]
    assert steps == [(None, "queued"), ("queued", "starting"), ("starting", "running"), ("running", "completed")]
    assert all(e["cause"] for e in job["events"])

    logs = (await running.client.get(f"/api/cloud/jobs/{job_id}/logs")).json()
    assert "Training step 4/4" in logs["logs"]
    assert logs["next_offset"] == len(logs["logs"])
    rest = (await running.client.get(f"/api/cloud/jobs/{job_id}/logs?offset={logs['next_offset']}")).json()
    assert rest["logs"] == ""
    tail = (await running.client.get(f"/api/cloud/jobs/{job_id}/logs?tail=1")).json()
    assert tail["logs"] == "Training complete\n"
    assert len(running.provider.runs_for(job_id)) == 1


async def test_failed_run_fails_the_job(running: RunningApp) -> None:
    job_id = (await running.client.post(SUBMIT, json=inline_job(**{"--scripted_outcome": "fail"}))).json()["job_id"]
    job = await wait_for_status(running.client, job_id, "completed", "failed")
    assert job["status"] == "failed"
    assert job["error"] == "scripted failure"
    assert "Error: scripted failure" in (await running.client.get(f"/api/cloud/jobs/{job_id}/logs")).json()["logs"]


async def test_refused_run_fails_with_the_providers_message(running: RunningApp) -> None:
    running.provider.reject_next_runs = 1
    job_id = (await running.client.post(SUBMIT, json=INLINE_JOB)).json()["job_id"]
    job = await wait_for_status(running.client, job_id, "failed")
    assert job["error"] == "scripted provider: this run was refused"
    assert running.provider.runs() == []


async def test_cancel_a_running_job(running: RunningApp) -> None:
    job_id = (await running.client.post(SUBMIT, json=inline_job(**{"--scripted_outcome": "hang"}))).json()["job_id"]
    await wait_for_status(running.client, job_id, "running")
    response = await running.client.post(f"/api/cloud/jobs/{job_id}/cancel")
    assert response.status_code == 200
    assert response.json() == {"success": True, "job_id": job_id, "status": "cancelled", "cancel_requested": False}
    job = await job_of(running.client, job_id)
    assert job["status"] == "cancelled" and job["finished_at"]
    assert running.provider.runs_for(job_id)[0]["cancelled_at"] is not None
    again = await running.client.post(f"/api/cloud/jobs/{job_id}/cancel")
    assert again.status_code == 409
    assert again.json()["code"] == "job_already_finished"


async def test_cancel_while_the_provider_is_unreachable_is_finished_by_the_scheduler(running: RunningApp) -> None:
    job_id = (await running.client.post(SUBMIT, json=inline_job(**{"--scripted_outcome": "hang"}))).json()["job_id"]
    await wait_for_status(running.client, job_id, "running")
    running.provider.unavailable_next_cancels = 1
    reply = (await running.client.post(f"/api/cloud/jobs/{job_id}/cancel")).json()
    assert reply["status"] == "running" and reply["cancel_requested"] is True
    job = await wait_for_status(running.client, job_id, "cancelled")
    assert job["cancel_requested"] is False


async def test_delete_only_finished_jobs(running: RunningApp) -> None:
    job_id = (await running.client.post(SUBMIT, json=inline_job(**{"--scripted_outcome": "hang"}))).json()["job_id"]
    await wait_for_status(running.client, job_id, "running")
    refused = await running.client.delete(f"/api/cloud/jobs/{job_id}")
    assert refused.status_code == 409
    assert refused.json()["code"] == "job_not_finished"
    await running.client.post(f"/api/cloud/jobs/{job_id}/cancel")
    deleted = await running.client.delete(f"/api/cloud/jobs/{job_id}")
    assert deleted.status_code == 200
    assert deleted.json() == {
        "success": True,
        "job_id": job_id,
        "deleted": True,
        "artifacts_deleted": 0,
        "artifacts_kept": 0,
    }
    assert (await running.client.get(f"/api/cloud/jobs/{job_id}")).status_code == 404
    assert (await running.client.get(f"/api/cloud/jobs/{job_id}/logs")).status_code == 404


async def test_list_filters_and_sync_active(running: RunningApp) -> None:
    hanging = (await running.client.post(SUBMIT, json=inline_job(**{"--scripted_outcome": "hang"}))).json()["job_id"]
    done = (await running.client.post(SUBMIT, json=INLINE_JOB)).json()["job_id"]
    await wait_for_status(running.client, done, "completed")
    await wait_for_status(running.client, hanging, "running")

    listed = (await running.client.get("/api/cloud/jobs?limit=10")).json()
    assert [job["job_id"] for job in listed["jobs"]] == [done, hanging]
    assert listed["has_more"] is False and listed["next_cursor"] is None
    assert "config" not in listed["jobs"][0], "the list stays light"

    by_status = (await running.client.get("/api/cloud/jobs?status=running")).json()
    assert [job["job_id"] for job in by_status["jobs"]] == [hanging]
    both = (await running.client.get("/api/cloud/jobs?status=running,completed")).json()
    assert len(both["jobs"]) == 2
    assert (await running.client.get("/api/cloud/jobs?provider=other")).json()["jobs"] == []


async def test_sync_active_reads_running_jobs_before_listing(manual: RunningApp) -> None:
    job_id = (await manual.client.post(SUBMIT, json=inline_job(**{"--scripted_seconds": 0.2}))).json()["job_id"]
    await manual.scheduler.run_dispatch_once()
    await manual.scheduler.drain()
    # Nothing syncs in the background here: only sync_active can see that the run has finished.
    await wait_until(lambda: _provider_status(manual, job_id), lambda status: status == "completed", timeout=5)
    plain = (await manual.client.get("/api/cloud/jobs")).json()
    assert plain["jobs"][0]["status"] in ("starting", "running") and plain["sync"] is None
    synced = (await manual.client.get("/api/cloud/jobs?sync_active=true")).json()
    assert synced["sync"] == {"success": True, "synced": 1, "imported": 0, "errors": []}
    assert synced["jobs"][0]["status"] == "completed"


async def _provider_status(app: RunningApp, job_id: str) -> str:
    [run] = app.provider.runs_for(job_id)
    return (await app.provider.get_job_status(run["id"])).status.value


async def test_sync_imports_runs_made_elsewhere(running: RunningApp) -> None:
    run_id = running.provider.add_foreign_run()
    reply = (await running.client.post("/api/cloud/jobs/sync")).json()
    assert reply["success"] is True and reply["imported"] == 1
    jobs = (await running.client.get("/api/cloud/jobs")).json()["jobs"]
    assert [job["provider_job_id"] for job in jobs] == [run_id]
    assert (await running.client.post("/api/cloud/jobs/sync")).json()["imported"] == 0
    job = await wait_for_status(running.client, jobs[0]["job_id"], "completed")
    assert job["config_snapshot"]["source"] == "imported"


async def test_keyset_pagination_walks_every_job_once(manual: RunningApp) -> None:
    submitted = [(await manual.client.post(SUBMIT, json=INLINE_JOB)).json()["job_id"] for _ in range(23)]
    seen: list[str] = []
    cursor = None
    while True:
        url = "/api/cloud/jobs?limit=5" + (f"&cursor={cursor}" if cursor else "")
        page = (await manual.client.get(url)).json()
        seen.extend(job["job_id"] for job in page["jobs"])
        cursor = page["next_cursor"]
        assert page["has_more"] is (cursor is not None)
        if cursor is None:
            break
    assert seen == list(reversed(submitted))


async def test_errors_are_clear_and_4xx(running: RunningApp) -> None:
    client = running.client
    cases: list[tuple[str, str, Any, int, str]] = [
        ("POST", "/api/cloud/jobs/submit?provider=nope", INLINE_JOB, 400, "unknown_provider"),
        ("POST", SUBMIT, {"config": {"--model_family": "flux"}}, 400, "missing_dataloader"),
        ("POST", SUBMIT, {"config": {"a": 1}, "dataloader_config": []}, 400, "missing_dataloader"),
        ("POST", SUBMIT, {}, 400, "invalid_config"),
        ("POST", SUBMIT, {"config_name_to_load": "no-such-config"}, 404, "config_not_found"),
        ("POST", SUBMIT, {**INLINE_JOB, "config_name_to_load": "x"}, 400, "invalid_config"),
        ("POST", SUBMIT, {"config": "not an object"}, 422, "validation_error"),
        ("POST", SUBMIT, {**INLINE_JOB, "surprise": 1}, 422, "validation_error"),
        ("POST", SUBMIT, {"config": {}, "dataloader_config": [{"id": "a"}]}, 422, "validation_error"),
        ("POST", SUBMIT, {"config": {}, "dataloader_config": [{"id": "a", "type": "local"}] * 2}, 400,
         "invalid_config"),
        ("GET", "/api/cloud/jobs/01m821nzaqybwa8nwxmn73v3s3", None, 404, "job_not_found"),
        ("GET", "/api/cloud/jobs/../../etc/passwd", None, 404, "route_not_found"),
        ("POST", "/api/cloud/jobs/01m821nzaqybwa8nwxmn73v3s3/cancel", None, 404, "job_not_found"),
        ("DELETE", "/api/cloud/jobs/nope", None, 404, "job_not_found"),
        ("GET", "/api/cloud/jobs?cursor=garbage", None, 400, "invalid_cursor"),
        ("GET", "/api/cloud/jobs?status=sleeping", None, 400, "invalid_request"),
        ("GET", "/api/cloud/jobs?limit=0", None, 422, "validation_error"),
        ("PATCH", "/api/cloud/jobs/submit", None, 405, "method_not_allowed"),
    ]  # fmt: skip
    for method, url, body, status, code in cases:
        response = await client.request(method, url, json=body)
        assert (response.status_code, response.json().get("code")) == (status, code), (method, url, response.text)
        detail = response.json()["detail"]
        assert isinstance(detail, str) and detail.endswith("."), detail

    malformed = await client.post(SUBMIT, content=b'{"config": ', headers={"content-type": "application/json"})
    assert malformed.status_code == 400
    assert malformed.json()["code"] == "invalid_json"
    # JSON sent as curl -d sends it (a form's type), on the fast submit route and on a FastAPI route.
    for method, url in (("POST", SUBMIT), ("PUT", "/api/configs/form-sent")):
        form = await client.request(
            method,
            url,
            content=json.dumps(INLINE_JOB).encode(),
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert (form.status_code, form.json()["code"]) == (415, "unsupported_media_type"), form.text
        assert "-H 'Content-Type: application/json'" in form.json()["detail"]
    assert (await client.get("/api/cloud/jobs")).json()["jobs"] == [], "no bad request created a job"


async def test_health_and_docs(running: RunningApp) -> None:
    health = (await running.client.get("/api/health")).json()
    assert health["status"] == "ok" and "scripted" in health["providers"]
    assert (await running.client.get("/docs")).status_code == 200
    # The web UI's page (or, when it was not built, a page saying how to build it).
    root = await running.client.get("/")
    assert root.status_code == 200 and root.headers["content-type"].startswith("text/html")
