"""The queue: order by priority and age, limits on busy jobs, aging, positions, the API."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select, update

from cloudtuner.core.roles import Role
from cloudtuner.core.states import ACTIVE_STATES
from cloudtuner.db.tables import JobRow
from cloudtuner.scheduler.loops import Scheduler
from cloudtuner.schemas.queue import DEFAULT_ROLE_PRIORITIES
from cloudtuner.services import leases, queue
from tests.fakes.scripted_provider import ScriptedProvider
from tests.integration.conftest import RunningApp, inline_job, make_settings, start_app

SUBMIT = "/api/cloud/jobs/submit?provider=scripted"
HANG = inline_job(**{"--scripted_outcome": "hang"})
LOCAL = DEFAULT_ROLE_PRIORITIES[Role.ADMIN]
"""Where jobs of single-user mode (its local admin) start."""


async def submit(app: RunningApp, body: dict[str, object] | None = None) -> str:
    response = await app.client.post(SUBMIT, json=body or HANG)
    assert response.status_code == 202, response.text
    job_id: str = response.json()["job_id"]
    return job_id


async def set_limits(app: RunningApp, **limits: object) -> None:
    response = await app.client.put("/api/queue/limits", json=limits)
    assert response.status_code == 200, response.text


async def busy_count(app: RunningApp) -> int:
    async with app.ctx.db.read() as session:
        count = await session.scalar(
            select(func.count()).select_from(JobRow).where(JobRow.status.in_([s.value for s in ACTIVE_STATES]))
        )
    return int(count or 0)


async def test_higher_priority_starts_first_then_oldest(manual: RunningApp) -> None:
    first, second, urgent = [await submit(manual) for _ in range(3)]
    response = await manual.client.put(f"/api/queue/{urgent}/priority", json={"priority": LOCAL + 5})
    assert response.status_code == 200, response.text
    assert response.json()["position"] == 1
    reply = (await manual.client.get("/api/queue")).json()
    assert [job["job_id"] for job in reply["jobs"]] == [urgent, first, second]
    assert reply["depth"] == 3 and reply["running"] == 0
    position = (await manual.client.get(f"/api/queue/{second}/position")).json()
    assert position["position"] == 3


async def test_global_limit_caps_busy_jobs_and_a_finished_job_frees_a_slot(manual: RunningApp) -> None:
    await set_limits(manual, max_concurrent=2)
    job_ids = [await submit(manual) for _ in range(5)]
    scheduler = Scheduler(manual.ctx, owner="one")
    for _ in range(3):
        await scheduler.run_dispatch_once()
        await scheduler.drain()
    assert await busy_count(manual) == 2
    assert (await manual.client.post(f"/api/cloud/jobs/{job_ids[0]}/cancel")).status_code == 200
    await scheduler.run_dispatch_once()
    await scheduler.drain()
    assert await busy_count(manual) == 2
    reply = (await manual.client.get("/api/queue")).json()
    assert reply["depth"] == 2 and reply["limits"]["max_concurrent"] == 2


async def test_provider_and_user_limits(manual: RunningApp) -> None:
    await set_limits(manual, provider_limits={"scripted": 1}, max_concurrent_per_user=3)
    for _ in range(4):
        await submit(manual)
    scheduler = Scheduler(manual.ctx, owner="one")
    await scheduler.run_dispatch_once()
    await scheduler.drain()
    assert await busy_count(manual) == 1
    await set_limits(manual, provider_limits=None)
    await scheduler.run_dispatch_once()
    await scheduler.drain()
    assert await busy_count(manual) == 3


async def test_two_dispatchers_never_exceed_the_limit(tmp_path: Path, database_url: str) -> None:
    provider = ScriptedProvider()
    settings = make_settings(tmp_path, database_url, scheduler_enabled=False)
    second_settings = make_settings(tmp_path / "b", database_url, scheduler_enabled=False)
    async with start_app(settings, provider) as first, start_app(second_settings, provider) as second:
        await set_limits(first, max_concurrent=3)
        for _ in range(12):
            await submit(first)
        schedulers = [Scheduler(first.ctx, owner="one"), Scheduler(second.ctx, owner="two")]
        for _ in range(4):
            await asyncio.gather(*(s.run_dispatch_once() for s in schedulers))
            await asyncio.gather(*(s.drain() for s in schedulers))
        assert await busy_count(first) == 3
        assert provider.run_job_calls == 3


async def test_waiting_jobs_gain_priority_and_are_not_starved(manual: RunningApp) -> None:
    old = await submit(manual)
    await set_limits(manual, aging_seconds=60)
    async with manual.ctx.db.transaction() as session:
        await session.execute(
            update(JobRow).where(JobRow.id == old).values(created_at=manual.ctx.clock.now() - timedelta(minutes=10))
        )
    urgent = await submit(manual)
    response = await manual.client.put(f"/api/queue/{urgent}/priority", json={"priority": LOCAL + 5})
    assert response.status_code == 200
    reply = (await manual.client.get("/api/queue")).json()
    # Ten minutes at one step a minute outweigh a priority of 5.
    assert [job["job_id"] for job in reply["jobs"]] == [old, urgent]
    assert reply["jobs"][0]["effective_priority"] >= 10
    claimed = await queue.claim_next(manual.ctx, "one", limit=1)
    assert [job_id for job_id, _ in claimed] == [old]


async def test_queued_jobs_per_user_limit_refuses_with_429(manual: RunningApp) -> None:
    await set_limits(manual, max_queued_per_user=2)
    await submit(manual)
    await submit(manual)
    response = await manual.client.post(SUBMIT, json=HANG)
    assert response.status_code == 429
    assert response.json()["code"] == "queue_full"
    assert "2" in response.json()["detail"]


async def test_bad_requests(manual: RunningApp) -> None:
    assert (await manual.client.put("/api/queue/limits", json={})).status_code == 400
    assert (await manual.client.put("/api/queue/limits", json={"max_concurrent": 0})).status_code == 422
    assert (await manual.client.put("/api/queue/limits", json={"provider_limits": {"x": 0}})).status_code == 400
    assert (await manual.client.get("/api/queue/01ARZ3NDEKTSV4RRFFQ69G5FAV/position")).status_code == 404
    job_id = await submit(manual)
    scheduler = Scheduler(manual.ctx, owner="one")
    await scheduler.run_dispatch_once()
    await scheduler.drain()
    response = await manual.client.get(f"/api/queue/{job_id}/position")
    assert response.status_code == 400
    assert "not waiting in the queue" in response.json()["detail"]


async def test_each_position_matches_the_queue_order(manual: RunningApp) -> None:
    """``get_position`` counts in SQL by stored priority and corrects for waiting only among the
    older jobs; whatever the mix, it agrees with the order of ``GET /api/queue``."""
    await set_limits(manual, aging_seconds=60)
    job_ids = [await submit(manual) for _ in range(14)]
    now = manual.ctx.clock.now()
    # (priority, minutes waited): old low-priority jobs that overtake by waiting, ties, and new ones.
    shapes = [(0, 30), (5, 0), (20, 12), (-3, 45), (8, 3), (8, 3), (30, 0), (0, 0), (2, 9), (12, 1), (1, 19), (29, 1)]
    shapes += [(-1000, 0), (10, 25)]
    async with manual.ctx.db.transaction() as session:
        for job_id, (priority, minutes) in zip(job_ids, shapes, strict=True):
            await session.execute(
                update(JobRow)
                .where(JobRow.id == job_id)
                .values(priority=priority, created_at=now - timedelta(minutes=minutes, seconds=1))
            )
    reply = (await manual.client.get("/api/queue")).json()
    order = [job["job_id"] for job in reply["jobs"]]
    assert sorted(order) == sorted(job_ids)
    for expected, job_id in enumerate(order, start=1):
        position = (await manual.client.get(f"/api/queue/{job_id}/position")).json()
        assert position["position"] == expected, (job_id, position, reply["jobs"])
        assert position["owner"] == "local" and position["team"] is None


async def test_take_jobs_leases_only_free_matching_candidates_in_their_order(manual: RunningApp) -> None:
    first, second, third = [await submit(manual) for _ in range(3)]
    (taken_before,) = await queue.claim_next(manual.ctx, "other", limit=1)
    assert taken_before[0] == first
    async with manual.ctx.db.transaction() as session:
        await session.execute(update(JobRow).where(JobRow.id == second).values(status="cancelled"))
    # A statement built once serves every call; the UPDATE's guard decides, not the caller's read.
    statement = leases.take_statement(leases.JOBS.c.status == "queued")
    claimed = await leases.take_jobs(manual.ctx, "one", [third, second, first, "no-such-job"], statement)
    assert [job_id for job_id, _ in claimed] == [third]
    assert await leases.take_jobs(manual.ctx, "one", [third], statement) == []
    assert await leases.take_jobs(manual.ctx, "one", [], statement) == []
    async with manual.ctx.db.read() as session:
        row = await session.get(JobRow, third)
        assert row is not None and row.lease_owner == "one" and row.lease_token == claimed[0][1]
