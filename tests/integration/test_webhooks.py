"""Webhook ingestion: signatures, source allowlist behind proxies, replays, ordering, finished jobs."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from cloudtuner.services import webhooks
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


async def test_the_fast_path_answers_as_the_route_would(
    manual: RunningApp, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Deliveries skip the framework (api.webhook_fast_path); everything else about the path does not."""
    from cloudtuner.api.routes import webhooks as webhook_routes

    for method in ("GET", "PUT"):
        other = await manual.client.request(method, HOOK)
        assert (other.status_code, other.json()["code"]) == (405, "method_not_allowed")
    deeper = await manual.client.post(f"{HOOK}/more", content=b"{}")
    assert (deeper.status_code, deeper.json()["code"]) == (404, "route_not_found")
    assert "/api/webhooks/{provider}" in (await manual.client.get("/openapi.json")).json()["paths"]

    _job_id, run_id = await started_job(manual)
    monkeypatch.setattr(webhook_routes, "MAX_WEBHOOK_BYTES", 64)  # a body cut short fails its signature
    long_logs = await deliver(manual, {"id": "e-long", "run_id": run_id, "status": "running", "logs": "x" * 200})
    assert (long_logs.status_code, long_logs.json()["code"]) == (401, "webhook_rejected")
    assert long_logs.headers["content-type"] == "application/json"

    async def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(webhooks, "ingest_webhook", broken)
    failed = await deliver(manual, {"id": "e-bug", "run_id": run_id, "status": "running"})
    assert (failed.status_code, failed.json()["code"]) == (500, "internal_error")
    assert "a bug" not in failed.text
    assert any("unexpected error" in record.message for record in caplog.records)


# --- group commit -------------------------------------------------------------------------------


def scripted_event(event_id: str, run_id: str, status: str, logs: str | None = None, cost: float | None = None) -> Any:
    from cloudtuner.providers.base import CloudJobInfo, CloudJobStatus, WebhookEvent

    info = CloudJobInfo(provider_job_id=run_id, status=CloudJobStatus(status), cost_usd=cost)
    return WebhookEvent(event_id=event_id, info=info, logs=logs)


def count_batches(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record the size of every transaction the webhook writer commits (or tries to)."""
    sizes: list[int] = []
    original = webhooks._commit_deliveries

    async def counting(ctx: Any, batch: Any) -> Any:
        sizes.append(len(batch))
        return await original(ctx, batch)

    monkeypatch.setattr(webhooks, "_commit_deliveries", counting)
    return sizes


async def logs_of(app: RunningApp, job_id: str) -> str:
    logs: str = (await app.client.get(f"/api/cloud/jobs/{job_id}/logs")).json()["logs"]
    return logs


async def test_concurrent_deliveries_share_one_transaction_in_arrival_order(
    manual: RunningApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_a, run_a = await started_job(manual)
    job_b, run_b = await started_job(manual)
    before = (await manual.client.get(f"/api/cloud/jobs/{job_a}")).json()["job"]
    batches = count_batches(monkeypatch)
    events = [
        scripted_event("a-1", run_a, "running", "a1\n"),
        scripted_event("b-1", run_b, "running", "b1\n"),
        scripted_event("a-2", run_a, "running", "a1\na2\n"),
        scripted_event("a-1", run_a, "running", "a1\n"),  # the same delivery again, in the same batch
        scripted_event("b-2", run_b, "completed", "b1\nb2\n", cost=0.5),
        scripted_event("b-3", run_b, "running", "b1\nb2\nb3\n"),  # late: the job stays completed
        scripted_event("x-1", "never-made", "completed"),
    ]
    outcomes = await asyncio.gather(*(webhooks.apply_webhook_event(manual.ctx, "scripted", e) for e in events))

    assert batches == [len(events)], "deliveries queued together are written in one transaction"
    assert [(o.duplicate, o.job_id, o.status and o.status.value) for o in outcomes] == [
        (False, job_a, "running"),
        (False, job_b, "running"),
        (False, job_a, "running"),
        (True, None, None),
        (False, job_b, "completed"),
        (False, job_b, "completed"),
        (False, None, None),
    ]
    assert await logs_of(manual, job_a) == "a1\na2\n"
    assert await logs_of(manual, job_b) == "b1\nb2\nb3\n"
    job = (await manual.client.get(f"/api/cloud/jobs/{job_b}")).json()["job"]
    assert (job["status"], job["cost_usd"]) == ("completed", 0.5)
    assert [e["cause"] for e in job["events"]][-1] == "webhook: completed"
    # The columns a delivery does not load are left as they were.
    after = (await manual.client.get(f"/api/cloud/jobs/{job_a}")).json()["job"]
    assert (after["config"], after["dataloader_config"]) == (before["config"], before["dataloader_config"])

    # Every id of that batch is now taken, also the unknown run's.
    replays = await asyncio.gather(
        *(webhooks.apply_webhook_event(manual.ctx, "scripted", e) for e in (events[1], events[6]))
    )
    assert [o.duplicate for o in replays] == [True, True]
    assert await logs_of(manual, job_b) == "b1\nb2\nb3\n"


async def test_a_failing_delivery_does_not_take_its_batch_down(
    manual: RunningApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_a, run_a = await started_job(manual)
    job_b, run_b = await started_job(manual)
    batches = count_batches(monkeypatch)
    original = webhooks.apply_observation

    def failing_for_b(ctx: Any, session: Any, job: Any, info: Any, cause: str) -> None:
        if job.id == job_b:
            raise RuntimeError("boom")
        original(ctx, session, job, info, cause)

    monkeypatch.setattr(webhooks, "apply_observation", failing_for_b)
    events = [
        scripted_event("a-1", run_a, "running", "a1\n"),
        scripted_event("b-1", run_b, "completed", "b1\n"),
        scripted_event("a-2", run_a, "completed", "a1\na2\n"),
    ]
    outcomes = await asyncio.gather(
        *(webhooks.apply_webhook_event(manual.ctx, "scripted", e) for e in events), return_exceptions=True
    )

    assert batches == [3, 1, 1, 1], "the batch is rolled back, then each delivery is tried alone"
    assert isinstance(outcomes[1], RuntimeError)
    assert [getattr(o, "status", None) for o in (outcomes[0], outcomes[2])] == [
        webhooks.JobStatus.RUNNING,
        webhooks.JobStatus.COMPLETED,
    ]
    assert await status_of(manual, job_a) == "completed"
    assert await logs_of(manual, job_a) == "a1\na2\n"
    assert await status_of(manual, job_b) in ("starting", "running")
    assert await logs_of(manual, job_b) == ""

    # The failed delivery left no receipt: sent again once the fault is gone, it counts.
    monkeypatch.setattr(webhooks, "apply_observation", original)
    again = await webhooks.apply_webhook_event(manual.ctx, "scripted", events[1])
    assert (again.duplicate, again.status) == (False, webhooks.JobStatus.COMPLETED)


async def test_a_delivery_may_read_columns_the_batch_did_not_load(
    manual: RunningApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id, run_id = await started_job(manual)
    seen: list[Any] = []
    original = webhooks.apply_observation

    def reading(ctx: Any, session: Any, job: Any, info: Any, cause: str) -> None:
        seen.append((job.config["--scripted_outcome"], job.dataloader_config[0]["id"]))
        original(ctx, session, job, info, cause)

    monkeypatch.setattr(webhooks, "apply_observation", reading)
    outcome = await webhooks.apply_webhook_event(manual.ctx, "scripted", scripted_event("e-1", run_id, "running"))
    assert (outcome.job_id, outcome.status) == (job_id, webhooks.JobStatus.RUNNING)
    assert seen == [("hang", "training-images")]


async def test_a_run_named_first_by_a_webhook_is_found_by_the_next_one_in_the_same_batch(
    manual: RunningApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cloudtuner.services import dispatch
    from cloudtuner.services.transitions import lock_job, transition_job

    job_id = (await manual.client.post("/api/cloud/jobs/submit?provider=scripted", json=inline_job())).json()["job_id"]
    assert await dispatch.claim_queued(manual.ctx, "someone")
    async with manual.ctx.db.transaction() as session:
        job = await lock_job(session, job_id)
        transition_job(session, job, dispatch.JobStatus.STARTING, cause="dispatched", now=manual.ctx.clock.now())
    batches = count_batches(monkeypatch)
    first, second = await asyncio.gather(
        webhooks.apply_webhook_event(
            manual.ctx, "scripted", scripted_event("e1", "run-early", "running", "one\n"), job_hint=job_id
        ),
        webhooks.apply_webhook_event(
            manual.ctx, "scripted", scripted_event("e2", "run-early", "running", "one\ntwo\n")
        ),
    )
    assert batches == [2]
    assert (first.job_id, second.job_id) == (job_id, job_id)
    job_view = (await manual.client.get(f"/api/cloud/jobs/{job_id}")).json()["job"]
    assert (job_view["provider_job_id"], job_view["status"]) == ("run-early", "running")
    assert await logs_of(manual, job_id) == "one\ntwo\n"


async def test_under_load_a_flush_waits_briefly_for_more_deliveries_but_never_for_a_lone_one(
    manual: RunningApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id, run_id = await started_job(manual)
    monkeypatch.setattr(webhooks, "LINGER_SECONDS", 5.0)  # ends as soon as enough deliveries are queued
    batches = count_batches(monkeypatch)

    def deliver_event(number: int) -> Any:
        event = scripted_event(f"e-{number}", run_id, "running", "".join(f"line {n}\n" for n in range(number)))
        return asyncio.create_task(webhooks.apply_webhook_event(manual.ctx, "scripted", event))

    started = asyncio.get_running_loop().time()
    # A delivery on its own is written at once, however long the linger.
    assert (await deliver_event(1)).status == webhooks.JobStatus.RUNNING
    assert batches == [1]

    # Two side by side form a batch; one queued while it commits is held until a second joins it.
    first, second = deliver_event(2), deliver_event(3)
    for _ in range(1000):
        if len(batches) == 2:
            break
        await asyncio.sleep(0)
    third = deliver_event(4)
    await first
    fourth = deliver_event(5)
    await asyncio.gather(second, third, fourth)
    assert batches == [1, 2, 2]
    assert asyncio.get_running_loop().time() - started < 2.5, "nothing waited for the whole linger"
    assert await logs_of(manual, job_id) == "".join(f"line {n}\n" for n in range(5))


async def test_a_batch_may_mix_providers_and_a_job_hint_never_crosses_them(
    manual: RunningApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id, run_id = await started_job(manual)
    batches = count_batches(monkeypatch)

    def apply(provider: str, event: Any, job_hint: str | None = None) -> Any:
        return webhooks.apply_webhook_event(manual.ctx, provider, event, job_hint=job_hint)

    events = [
        ("scripted", scripted_event("same-id", run_id, "running", "one\n"), None),
        # The same delivery id at another provider is another delivery.
        ("replicate", scripted_event("same-id", "p-unknown", "completed"), None),
        # A hint naming another provider's job is ignored.
        ("replicate", scripted_event("r-2", "p-other", "completed"), job_id),
    ]
    outcomes = await asyncio.gather(*(apply(*event) for event in events))
    assert batches == [3]
    assert [(o.duplicate, o.job_id, o.status and o.status.value) for o in outcomes] == [
        (False, job_id, "running"),
        (False, None, None),
        (False, None, None),
    ]
    job = (await manual.client.get(f"/api/cloud/jobs/{job_id}")).json()["job"]
    assert (job["status"], job["provider_job_id"]) == ("running", run_id)
    replays = await asyncio.gather(*(apply(*event) for event in events))
    assert [o.duplicate for o in replays] == [True, True, True]
