"""Webhook ingestion: signatures, source allowlist behind proxies, replays, ordering, finished jobs."""

from __future__ import annotations

import json
from typing import Any

from tests.fakes.scripted_provider import sign_webhook
from tests.integration.conftest import RunningApp, inline_job

HOOK = "/api/webhooks/scripted"


async def started_job(app: RunningApp) -> tuple[str, str]:
    job_id = (
        await app.client.post(
            "/api/cloud/jobs/submit?provider=scripted", json=inline_job(**{"--scripted_outcome": "hang"})
        )
    ).json()["job_id"]
    await app.scheduler.run_dispatch_once()
    await app.scheduler.drain()
    job = (await app.client.get(f"/api/cloud/jobs/{job_id}")).json()["job"]
    return job_id, job["provider_job_id"]


async def deliver(app: RunningApp, event: dict[str, Any], *, signature: str | None = None, **headers: str) -> Any:
    body = json.dumps(event).encode()
    all_headers = {"x-scripted-signature": signature if signature is not None else sign_webhook(body), **headers}
    return await app.client.post(HOOK, content=body, headers=all_headers)


async def status_of(app: RunningApp, job_id: str) -> str:
    status: str = (await app.client.get(f"/api/cloud/jobs/{job_id}")).json()["job"]["status"]
    return status


async def test_signed_events_move_the_job_and_replays_change_nothing(manual: RunningApp) -> None:
    job_id, run_id = await started_job(manual)
    running = await deliver(manual, {"id": "evt-1", "run_id": run_id, "status": "running", "logs": "step 1\n"})
    assert running.status_code == 200
    assert running.json() == {"success": True, "duplicate": False, "job_id": job_id, "status": "running"}
    done = await deliver(
        manual, {"id": "evt-2", "run_id": run_id, "status": "completed", "logs": "step 1\nstep 2\n", "cost": 0.42}
    )
    assert done.json()["status"] == "completed"
    job = (await manual.client.get(f"/api/cloud/jobs/{job_id}")).json()["job"]
    assert job["cost_usd"] == 0.42
    assert job["events"][-1]["cause"] == "webhook: completed"
    assert (await manual.client.get(f"/api/cloud/jobs/{job_id}/logs")).json()["logs"] == "step 1\nstep 2\n"

    replay = await deliver(manual, {"id": "evt-1", "run_id": run_id, "status": "running", "logs": "step 1\n"})
    assert replay.json()["duplicate"] is True
    late = await deliver(manual, {"id": "evt-3", "run_id": run_id, "status": "running"})
    assert late.status_code == 200
    assert await status_of(manual, job_id) == "completed", "a finished job stays finished"


async def test_bad_signatures_are_refused_and_change_nothing(manual: RunningApp) -> None:
    job_id, run_id = await started_job(manual)
    for signature in ("", "0" * 64, sign_webhook(b"another body")):
        response = await deliver(manual, {"id": "evt-x", "run_id": run_id, "status": "completed"}, signature=signature)
        assert (response.status_code, response.json()["code"]) == (401, "webhook_rejected")
    assert await status_of(manual, job_id) in ("starting", "running")
    # A rejected delivery's id is not burnt: the genuine one still counts.
    genuine = await deliver(manual, {"id": "evt-x", "run_id": run_id, "status": "completed"})
    assert genuine.json()["duplicate"] is False and genuine.json()["status"] == "completed"


async def test_source_allowlist_and_trusted_proxies(manual: RunningApp) -> None:
    _job_id, run_id = await started_job(manual)
    await manual.client.put("/api/cloud/providers/scripted", json={"webhook_allowed_ips": ["34.82.0.0/16"]})
    event = {"id": "evt-a", "run_id": run_id, "status": "running"}
    direct = await deliver(manual, event)
    assert (direct.status_code, direct.json()["code"]) == (403, "webhook_source_forbidden")
    forged = await deliver(manual, event, **{"x-forwarded-for": "34.82.1.2"})
    assert forged.status_code == 403, "X-Forwarded-For is ignored unless the peer is a trusted proxy"

    await manual.client.put("/api/cloud/settings", json={"trusted_proxies": ["127.0.0.1"]})
    proxied = await deliver(manual, event, **{"x-forwarded-for": "34.82.1.2"})
    assert proxied.status_code == 200 and proxied.json()["status"] == "running"
    spoofed = await deliver(manual, {**event, "id": "evt-b"}, **{"x-forwarded-for": "34.82.1.2, 8.8.8.8"})
    assert spoofed.status_code == 403, "the nearest untrusted hop is the client"


async def test_a_webhook_can_name_the_run_before_its_creation_reply_is_applied(manual: RunningApp) -> None:
    job_id = (await manual.client.post("/api/cloud/jobs/submit?provider=scripted", json=inline_job())).json()["job_id"]
    from cloudtuner.services import dispatch
    from cloudtuner.services.transitions import lock_job, transition_job

    claimed = await dispatch.claim_queued(manual.ctx, "someone")
    assert claimed
    async with manual.ctx.db.transaction() as session:
        job = await lock_job(session, job_id)
        transition_job(session, job, dispatch.JobStatus.STARTING, cause="dispatched", now=manual.ctx.clock.now())
    response = await manual.client.post(
        f"{HOOK}?job_id={job_id}",
        content=(body := json.dumps({"id": "e1", "run_id": "run-early", "status": "running"}).encode()),
        headers={"x-scripted-signature": sign_webhook(body)},
    )
    assert response.json()["job_id"] == job_id
    job = (await manual.client.get(f"/api/cloud/jobs/{job_id}")).json()["job"]
    assert job["provider_job_id"] == "run-early" and job["status"] == "running"


async def test_webhooks_need_no_sign_in_and_unknown_runs_are_ignored(manual: RunningApp) -> None:
    response = await deliver(manual, {"id": "e9", "run_id": "never-made", "status": "completed"})
    assert response.status_code == 200 and response.json()["job_id"] is None
    unknown = await manual.client.post("/api/webhooks/nope", content=b"{}")
    assert (unknown.status_code, unknown.json()["code"]) == (400, "unknown_provider")
