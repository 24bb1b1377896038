"""JobUpdates batches: the rows their changes add are written with the batch, in order, or not at all."""

from __future__ import annotations

import asyncio

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from cloudtuner.core.states import JobStatus
from cloudtuner.db.tables import JobEventRow, JobRow, StorageCredentialRow
from cloudtuner.services.storage_credentials import JobStorageCredentials, add_job_storage_credentials
from cloudtuner.services.transitions import lock_job, record_event, transition_job
from tests.integration.conftest import INLINE_JOB, RunningApp

SUBMIT = "/api/cloud/jobs/submit?provider=scripted"


async def submit(app: RunningApp) -> str:
    response = await app.client.post(SUBMIT, json=INLINE_JOB)
    assert response.status_code == 202, response.text
    job_id: str = response.json()["job_id"]
    return job_id


async def events_of(app: RunningApp, job_id: str) -> list[tuple[str | None, str, str]]:
    async with app.ctx.db.read() as session:
        rows = await session.scalars(select(JobEventRow).where(JobEventRow.job_id == job_id).order_by(JobEventRow.id))
        return [(row.from_status, row.to_status, row.cause) for row in rows]


async def keys_of(app: RunningApp, job_id: str) -> set[str]:
    async with app.ctx.db.read() as session:
        return set(
            await session.scalars(
                select(StorageCredentialRow.access_key_id).where(StorageCredentialRow.job_id == job_id)
            )
        )


async def test_a_batch_writes_the_rows_its_changes_add_in_order(manual: RunningApp) -> None:
    jobs = [await submit(manual) for _ in range(3)]
    now = manual.ctx.clock.now()

    def change(session: AsyncSession, job: JobRow | None) -> JobStorageCredentials:
        assert job is not None
        transition_job(session, job, JobStatus.STARTING, cause="first", now=now)
        record_event(session, job, from_status=None, cause="second", detail=None, now=now)
        return add_job_storage_credentials(manual.ctx, session, job, now=now)

    # Queued side by side, the three changes share one batch (one transaction).
    issued = await asyncio.gather(*(manual.ctx.job_updates.apply(job_id, change) for job_id in jobs))
    for job_id, key in zip(jobs, issued, strict=True):
        assert await events_of(manual, job_id) == [
            (None, "queued", "submitted"),
            ("queued", "starting", "first"),
            (None, "starting", "second"),
        ]
        assert await keys_of(manual, job_id) == {key.access_key_id}
    async with manual.ctx.db.read() as session:
        ids = list(
            await session.scalars(
                select(JobEventRow.job_id).where(JobEventRow.cause != "submitted").order_by(JobEventRow.id)
            )
        )
    assert ids == [job_id for job_id in jobs for _ in range(2)]  # in the order the changes ran


async def test_a_change_that_raises_adds_no_rows_and_the_others_keep_theirs(manual: RunningApp) -> None:
    good, bad = await submit(manual), await submit(manual)
    now = manual.ctx.clock.now()

    def change(session: AsyncSession, job: JobRow | None) -> None:
        assert job is not None
        transition_job(session, job, JobStatus.STARTING, cause="dispatched", now=now)
        add_job_storage_credentials(manual.ctx, session, job, now=now)
        if job.id == bad:
            raise RuntimeError("refused")

    results = await asyncio.gather(
        manual.ctx.job_updates.apply(good, change), manual.ctx.job_updates.apply(bad, change), return_exceptions=True
    )
    assert results[0] is None and isinstance(results[1], RuntimeError)
    assert [cause for _, _, cause in await events_of(manual, good)] == ["submitted", "dispatched"]
    assert [cause for _, _, cause in await events_of(manual, bad)] == ["submitted"]
    assert len(await keys_of(manual, good)) == 1
    assert await keys_of(manual, bad) == set()


async def test_outside_a_batch_an_added_event_is_seen_by_the_same_transaction(manual: RunningApp) -> None:
    job_id = await submit(manual)
    async with manual.ctx.db.transaction() as session:
        job = await lock_job(session, job_id)
        transition_job(session, job, JobStatus.STARTING, cause="dispatched", now=manual.ctx.clock.now())
        causes = list(
            await session.scalars(
                select(JobEventRow.cause).where(JobEventRow.job_id == job_id).order_by(JobEventRow.id)
            )
        )
    assert causes == ["submitted", "dispatched"]
