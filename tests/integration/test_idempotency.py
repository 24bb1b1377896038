"""Idempotency keys: replay, conflict, the 20-request race, expiry, per-caller scope."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import func, select, update

from cloudtuner.core.permissions import ALL_PERMISSIONS, Principal
from cloudtuner.db.tables import IdempotencyKeyRow, JobRow
from cloudtuner.schemas.jobs import SubmitJobRequest
from cloudtuner.services import submissions as job_service
from tests.integration.conftest import INLINE_JOB, RunningApp

SUBMIT = "/api/cloud/jobs/submit?provider=scripted"


async def count_jobs(app: RunningApp) -> int:
    async with app.ctx.db.read() as session:
        return int(await session.scalar(select(func.count()).select_from(JobRow)) or 0)


async def test_replay_returns_the_same_job(manual: RunningApp) -> None:
    body = {"config_name_to_load": None, **INLINE_JOB, "idempotency_key": "ci-build-12345"}
    first = await manual.client.post(SUBMIT, json=body)
    second = await manual.client.post(SUBMIT, json=body)
    assert first.status_code == 202 and second.status_code == 200
    assert first.json()["idempotent_hit"] is False
    assert second.json()["idempotent_hit"] is True
    assert second.json()["job_id"] == first.json()["job_id"]
    assert second.json()["job"]["idempotency_key"] == "ci-build-12345"
    assert await count_jobs(manual) == 1


async def test_same_key_different_body_is_refused(manual: RunningApp) -> None:
    await manual.client.post(SUBMIT, json={**INLINE_JOB, "idempotency_key": "k"})
    changed = {**INLINE_JOB, "tracker_run_name": "another", "idempotency_key": "k"}
    response = await manual.client.post(SUBMIT, json=changed)
    assert response.status_code == 409
    assert response.json()["code"] == "idempotency_key_conflict"
    other_provider = await manual.client.post(
        "/api/cloud/jobs/submit?provider=scripted", json={**INLINE_JOB, "idempotency_key": "k", "hardware": "x"}
    )
    assert other_provider.status_code == 409
    assert await count_jobs(manual) == 1


async def test_twenty_concurrent_submits_create_one_job(manual: RunningApp) -> None:
    body = {**INLINE_JOB, "idempotency_key": "gh-abc123"}
    replies = await asyncio.gather(*(manual.client.post(SUBMIT, json=body) for _ in range(20)))
    assert all(reply.status_code in (200, 202) for reply in replies), [r.text for r in replies]
    assert len({reply.json()["job_id"] for reply in replies}) == 1
    assert sum(not reply.json()["idempotent_hit"] for reply in replies) == 1
    assert await count_jobs(manual) == 1


async def test_twenty_concurrent_submits_through_the_service(manual: RunningApp) -> None:
    """The race again below HTTP, so the requests truly overlap inside the transaction."""
    request = SubmitJobRequest.model_validate({**INLINE_JOB, "idempotency_key": "svc-race"})
    principal = Principal(id="racer", name="racer", permissions=ALL_PERMISSIONS)
    results = await asyncio.gather(
        *(job_service.submit_job(manual.ctx, principal, "scripted", request) for _ in range(20))
    )
    assert len({result.job.job_id for result in results}) == 1
    assert await count_jobs(manual) == 1


async def test_keys_are_scoped_to_the_caller(manual: RunningApp) -> None:
    request = SubmitJobRequest.model_validate({**INLINE_JOB, "idempotency_key": "shared"})
    alice = Principal(id="alice", name="alice", permissions=ALL_PERMISSIONS)
    bob = Principal(id="bob", name="bob", permissions=ALL_PERMISSIONS)
    a = await job_service.submit_job(manual.ctx, alice, "scripted", request)
    b = await job_service.submit_job(manual.ctx, bob, "scripted", request)
    assert a.job.job_id != b.job.job_id
    assert not a.idempotent_hit and not b.idempotent_hit


async def test_an_expired_key_makes_a_new_job(manual: RunningApp) -> None:
    body = {**INLINE_JOB, "idempotency_key": "old"}
    first = (await manual.client.post(SUBMIT, json=body)).json()["job_id"]
    async with manual.ctx.db.transaction() as session:
        past = manual.ctx.clock.now() - timedelta(hours=25)
        await session.execute(update(IdempotencyKeyRow).values(created_at=past, expires_at=past + timedelta(hours=24)))
    second = (await manual.client.post(SUBMIT, json=body)).json()
    assert second["idempotent_hit"] is False and second["job_id"] != first
    # Housekeeping removes expired keys; the live one stays.
    await manual.scheduler.run_housekeeping_once()
    async with manual.ctx.db.read() as session:
        keys = (await session.scalars(select(IdempotencyKeyRow))).all()
    assert [key.job_id for key in keys] == [second["job_id"]]


async def test_deleting_the_job_frees_its_key(running: RunningApp) -> None:
    body = {**INLINE_JOB, "idempotency_key": "reuse-after-delete"}
    job_id = (await running.client.post(SUBMIT, json=body)).json()["job_id"]
    await running.client.post(f"/api/cloud/jobs/{job_id}/cancel")
    assert (await running.client.delete(f"/api/cloud/jobs/{job_id}")).status_code == 200
    again = (await running.client.post(SUBMIT, json=body)).json()
    assert again["idempotent_hit"] is False and again["job_id"] != job_id
