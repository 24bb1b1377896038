"""The scheduler's contracts: leases, intent before spend, recovery by reference, terminal states final."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select, update

from cloudtuner.core.states import JobStatus
from cloudtuner.db.tables import JobRow
from cloudtuner.providers.base import CloudJobInfo, CloudJobStatus
from cloudtuner.scheduler.loops import Scheduler
from cloudtuner.services import dispatch, leases, observations
from cloudtuner.services.transitions import lock_job, transition_job
from tests.fakes.scripted_provider import ScriptedProvider
from tests.integration.conftest import INLINE_JOB, RunningApp, inline_job, make_settings, start_app
from tests.support.waiting import wait_until

SUBMIT = "/api/cloud/jobs/submit?provider=scripted"


async def job_row(app: RunningApp, job_id: str) -> JobRow:
    async with app.ctx.db.read() as session:
        job = await session.get(JobRow, job_id)
        assert job is not None
        return job


async def expire_leases(app: RunningApp) -> None:
    """Move every lease into the past, as if its holder died long ago."""
    async with app.ctx.db.transaction() as session:
        past = app.ctx.clock.now() - timedelta(seconds=1)
        await session.execute(update(JobRow).where(JobRow.lease_token.is_not(None)).values(lease_expires_at=past))


async def submit(app: RunningApp, body: dict[str, object] | None = None) -> str:
    response = await app.client.post(SUBMIT, json=body or INLINE_JOB)
    assert response.status_code == 202, response.text
    job_id: str = response.json()["job_id"]
    return job_id


async def test_submit_does_not_call_the_provider(manual: RunningApp) -> None:
    await submit(manual)
    assert manual.provider.run_job_calls == 0


async def test_dispatch_claims_once_and_records_the_attempt(manual: RunningApp) -> None:
    job_id = await submit(manual)
    assert await manual.scheduler.run_dispatch_once() == 1
    await manual.scheduler.drain()
    assert await manual.scheduler.run_dispatch_once() == 0
    job = await job_row(manual, job_id)
    assert job.dispatch_attempts == 1
    assert job.provider_job_id is not None
    assert job.lease_token is None
    assert manual.provider.run_job_calls == 1


async def test_reply_lost_after_the_run_was_created_is_reconciled_without_a_second_run(manual: RunningApp) -> None:
    job_id = await submit(manual, inline_job(**{"--scripted_crash_after_accept": True}))
    await manual.scheduler.run_dispatch_once()
    await manual.scheduler.drain()
    job = await job_row(manual, job_id)
    assert job.status == JobStatus.STARTING.value and job.provider_job_id is None
    assert len(manual.provider.runs_for(job_id)) == 1

    assert await manual.scheduler.run_reconcile_once() >= 1
    await manual.scheduler.drain()
    job = await job_row(manual, job_id)
    assert job.provider_job_id == manual.provider.runs_for(job_id)[0]["id"]
    assert manual.provider.run_job_calls == 1
    assert len(manual.provider.runs_for(job_id)) == 1


async def test_crash_before_the_provider_was_called_requeues_and_sends_once(manual: RunningApp) -> None:
    job_id = await submit(manual)
    # The dispatcher recorded its intent and died before calling the provider.
    claimed = await dispatch.claim_queued(manual.ctx, "dead-process")
    async with manual.ctx.db.transaction() as session:
        job = await lock_job(session, job_id)
        job.dispatch_attempts += 1
        transition_job(session, job, JobStatus.STARTING, cause="dispatched", now=manual.ctx.clock.now())
    assert claimed and claimed[0][0] == job_id

    # Its lease is still live: nobody else touches the job.
    assert await manual.scheduler.run_reconcile_once() == 0
    await expire_leases(manual)
    await manual.scheduler.run_reconcile_once()
    await manual.scheduler.drain()
    assert (await job_row(manual, job_id)).status == JobStatus.QUEUED.value
    await manual.scheduler.run_dispatch_once()
    await manual.scheduler.drain()
    job = await job_row(manual, job_id)
    assert job.status in (JobStatus.STARTING.value, JobStatus.RUNNING.value)
    assert job.dispatch_attempts == 2
    assert len(manual.provider.runs_for(job_id)) == 1
    causes = [e["cause"] for e in (await manual.client.get(f"/api/cloud/jobs/{job_id}")).json()["job"]["events"]]
    assert causes == ["submitted", "dispatched", "requeued", "dispatched"]


async def test_gives_up_after_the_allowed_attempts(manual: RunningApp) -> None:
    job_id = await submit(manual)
    manual.provider.unavailable_next_calls = 100  # every call fails: no run is ever made
    for _ in range(manual.ctx.settings.max_dispatch_attempts):
        await manual.scheduler.run_dispatch_once()
        await manual.scheduler.drain()
        manual.provider.unavailable_next_calls = 0  # the lookup works, and finds nothing
        await manual.scheduler.run_reconcile_once()
        await manual.scheduler.drain()
        manual.provider.unavailable_next_calls = 100
    job = await job_row(manual, job_id)
    assert job.status == JobStatus.FAILED.value
    assert "Gave up after 3 attempts" in (job.error or "")
    assert manual.provider.runs() == []


async def test_a_rate_limited_start_goes_back_to_the_queue_without_counting(manual: RunningApp) -> None:
    job_id = await submit(manual)
    manual.provider.rate_limit_next_runs = 5  # more than max_dispatch_attempts, and still no failure
    for _ in range(5):
        await manual.scheduler.run_dispatch_once()
        await manual.scheduler.drain()
        job = await job_row(manual, job_id)
        assert job.status == JobStatus.QUEUED.value and job.lease_token is None
        assert job.dispatch_attempts == 0
    await manual.scheduler.run_dispatch_once()
    await manual.scheduler.drain()
    job = await job_row(manual, job_id)
    assert job.status in (JobStatus.STARTING.value, JobStatus.RUNNING.value), job.error
    assert job.dispatch_attempts == 1
    assert len(manual.provider.runs_for(job_id)) == 1
    causes = [e["cause"] for e in (await manual.client.get(f"/api/cloud/jobs/{job_id}")).json()["job"]["events"]]
    assert causes == ["submitted", *["dispatched", "requeued"] * 5, "dispatched"]


async def test_cancel_during_dispatch_cancels_the_new_run(manual: RunningApp) -> None:
    job_id = await submit(manual, inline_job(**{"--scripted_outcome": "hang"}))
    [(claimed_id, token)] = await dispatch.claim_queued(manual.ctx, manual.scheduler.owner)
    assert claimed_id == job_id
    # dispatch_job records the intent and calls the provider; the user cancels in between.
    real_run_job = manual.provider.run_job

    async def run_job_then_user_cancels(request):  # type: ignore[no-untyped-def]
        info = await real_run_job(request)
        reply = await manual.client.post(f"/api/cloud/jobs/{job_id}/cancel")
        assert reply.json()["status"] == "cancelled"
        return info

    manual.provider.run_job = run_job_then_user_cancels  # type: ignore[method-assign]
    await dispatch.dispatch_job(manual.ctx, job_id, token)
    job = await job_row(manual, job_id)
    assert job.status == JobStatus.CANCELLED.value
    [run] = manual.provider.runs_for(job_id)
    assert job.provider_job_id == run["id"]
    assert run["cancelled_at"] is not None, "the run created for a cancelled job is stopped"


async def test_terminal_states_are_final(manual: RunningApp) -> None:
    job_id = await submit(manual)
    await manual.client.post(f"/api/cloud/jobs/{job_id}/cancel")
    late = CloudJobInfo(provider_job_id="late", status=CloudJobStatus.RUNNING)
    async with manual.ctx.db.transaction() as session:
        job = await lock_job(session, job_id)
        observations.apply_observation(manual.ctx, session, job, late, cause="late event")
    async with manual.ctx.db.transaction() as session:
        job = await lock_job(session, job_id)
        done = CloudJobInfo(provider_job_id="late", status=CloudJobStatus.COMPLETED)
        observations.apply_observation(manual.ctx, session, job, done, cause="late event")
    assert (await job_row(manual, job_id)).status == JobStatus.CANCELLED.value


async def test_out_of_order_observations_never_move_a_job_back(manual: RunningApp) -> None:
    job_id = await submit(manual)
    async with manual.ctx.db.transaction() as session:
        job = await lock_job(session, job_id)
        running = CloudJobInfo(provider_job_id="r", status=CloudJobStatus.RUNNING)
        observations.apply_observation(manual.ctx, session, job, running, cause="webhook")
        starting = CloudJobInfo(provider_job_id="r", status=CloudJobStatus.STARTING)
        observations.apply_observation(manual.ctx, session, job, starting, cause="stale webhook")
    assert (await job_row(manual, job_id)).status == JobStatus.RUNNING.value


async def test_two_schedulers_on_one_database_run_each_job_once(tmp_path: Path, database_url: str) -> None:
    provider = ScriptedProvider()
    settings = make_settings(tmp_path, database_url, scheduler_enabled=False)
    second_settings = make_settings(tmp_path / "b", database_url, scheduler_enabled=False)
    async with start_app(settings, provider) as first, start_app(second_settings, provider) as second:
        job_ids = [await submit(first, inline_job(**{"--scripted_outcome": "hang"})) for _ in range(24)]
        # Each takes at most 8 jobs a round, so both get some.
        schedulers = [
            Scheduler(first.ctx, owner="one", max_concurrent_calls=8),
            Scheduler(second.ctx, owner="two", max_concurrent_calls=8),
        ]
        claims = {"one": 0, "two": 0}
        for _ in range(20):
            # Both claim before either finishes: their claims overlap in time.
            for scheduler in schedulers:
                claims[scheduler.owner] += await scheduler.run_dispatch_once()
            for scheduler in schedulers:
                await scheduler.drain()
            if sum(claims.values()) >= 24:
                break
        async with first.ctx.db.read() as session:
            rows = (await session.scalars(select(JobRow).where(JobRow.id.in_(job_ids)))).all()
        assert all(row.provider_job_id for row in rows)
        assert claims["one"] > 0 and claims["two"] > 0
        assert sum(claims.values()) == 24
        assert provider.run_job_calls == 24
        assert all(len(provider.runs_for(job_id)) == 1 for job_id in job_ids)


async def test_a_running_job_survives_a_server_restart(tmp_path: Path, database_url: str) -> None:
    state = tmp_path / "remote.json"
    settings = make_settings(tmp_path, database_url)
    async with start_app(settings, ScriptedProvider(state_path=state)) as first:
        job_id = await submit(first, inline_job(**{"--scripted_seconds": 1.5}))
        await wait_until(lambda: job_row(first, job_id), lambda job: job.status == "running")
    async with start_app(settings, ScriptedProvider(state_path=state)) as second:
        job = await wait_until(lambda: job_row(second, job_id), lambda job: job.status == "completed")
        assert job.dispatch_attempts == 1
        assert len(second.provider.runs_for(job_id)) == 1


async def test_lease_heartbeat_renews_only_while_the_body_runs(tmp_path: Path, database_url: str) -> None:
    settings = make_settings(tmp_path, database_url, scheduler_enabled=False, lease_seconds=0.6)
    async with start_app(settings, ScriptedProvider()) as app:
        job_id = await submit(app)
        ((claimed_id, token),) = await dispatch.claim_queued(app.ctx, "one")
        assert claimed_id == job_id
        first_expiry = (await job_row(app, job_id)).lease_expires_at
        assert first_expiry is not None
        # A short body: nothing is renewed (only a timer was set).
        async with leases.lease_heartbeat(app.ctx, job_id, token):
            pass
        assert (await job_row(app, job_id)).lease_expires_at == first_expiry
        # A body longer than the lease: renewed every third of it, so the lease never lapses.
        async with leases.lease_heartbeat(app.ctx, job_id, token):
            await asyncio.sleep(0.9)
            renewed = (await job_row(app, job_id)).lease_expires_at
            assert renewed is not None and renewed > first_expiry
            assert renewed > app.ctx.clock.now()
        await asyncio.sleep(0.45)
        # Stopped with the body: no renewal after it ended.
        assert (await job_row(app, job_id)).lease_expires_at == renewed


async def test_a_run_first_seen_finished_still_records_when_it_ran(manual: RunningApp) -> None:
    """A run that starts and ends between two reads: the job still gets its start time, its
    duration and the running step, from what the provider reports."""
    job_id = await submit(manual, inline_job(**{"--scripted_seconds": 0.2}))
    await manual.scheduler.run_dispatch_once()
    await manual.scheduler.drain()
    run_id = (await job_row(manual, job_id)).provider_job_id
    assert run_id is not None and (await job_row(manual, job_id)).status == JobStatus.STARTING.value

    reported = await wait_until(
        lambda: manual.provider.get_job_status(run_id), lambda info: info.status is CloudJobStatus.COMPLETED
    )
    await expire_leases(manual)
    await manual.scheduler.run_reconcile_once()
    await manual.scheduler.drain()

    job = (await manual.client.get(f"/api/cloud/jobs/{job_id}")).json()["job"]
    assert job["status"] == "completed"
    assert [event["to_status"] for event in job["events"]] == ["queued", "starting", "running", "completed"]
    assert job["events"][2]["cause"] == "provider reported the run's start"
    row = await job_row(manual, job_id)
    assert reported.started_at is not None and row.started_at == reported.started_at
    assert row.finished_at is not None and row.finished_at > row.started_at
    assert job["duration_seconds"] >= 0.2


async def test_a_reported_start_is_kept_between_dispatch_and_now(manual: RunningApp) -> None:
    early, late = await submit(manual), await submit(manual)
    created = (await job_row(manual, early)).created_at
    reports = {
        early: created - timedelta(hours=1),  # the provider's clock is behind ours
        late: manual.ctx.clock.now() + timedelta(hours=1),  # or ahead
    }
    for job_id, started in reports.items():
        async with manual.ctx.db.transaction() as session:
            job = await lock_job(session, job_id)
            info = CloudJobInfo(provider_job_id=job_id, status=CloudJobStatus.FAILED, started_at=started, error="oom")
            observations.apply_observation(manual.ctx, session, job, info, cause="sync")
    assert (await job_row(manual, early)).started_at == created
    late_row = await job_row(manual, late)
    assert late_row.started_at is not None and late_row.finished_at is not None
    assert late_row.started_at <= late_row.finished_at
    assert late_row.status == JobStatus.FAILED.value and late_row.error == "oom"


async def test_a_finished_run_reported_with_no_start_is_not_given_one(manual: RunningApp) -> None:
    job_id = await submit(manual)
    async with manual.ctx.db.transaction() as session:
        job = await lock_job(session, job_id)
        done = CloudJobInfo(provider_job_id="r", status=CloudJobStatus.COMPLETED)
        observations.apply_observation(manual.ctx, session, job, done, cause="sync")
    row = await job_row(manual, job_id)
    assert row.status == JobStatus.COMPLETED.value and row.started_at is None
    events = (await manual.client.get(f"/api/cloud/jobs/{job_id}")).json()["job"]["events"]
    assert [event["to_status"] for event in events] == ["queued", "completed"]
