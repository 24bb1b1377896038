"""Per-job storage keys: issued and expired inside the caller's transaction, limited to the job's prefix."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete, func, select

from cloudtuner.core.errors import JobNotFoundError
from cloudtuner.db.tables import JobRow, StorageCredentialRow
from cloudtuner.services.storage_credentials import (
    STALE_KEY_RETENTION,
    add_job_storage_credentials,
    delete_stale_storage_credentials,
    expire_job_storage_credentials,
    issue_job_storage_credentials,
)
from cloudtuner.services.storage_endpoint import StorageEndpoint
from tests.fakes.scripted_provider import ScriptedProvider
from tests.integration.conftest import RunningApp, make_settings, start_app
from tests.integration.storage.credentials_support import CREDENTIALS, Key, s3_call, s3_code, submit_job


async def issue(running: RunningApp, job_id: str, *, reuse: bool = True) -> Key:
    async with running.ctx.db.transaction() as session:
        issued = await issue_job_storage_credentials(running.ctx, session, job_id, reuse=reuse)
    assert issued.bucket == "cloudtuner"
    assert issued.prefix == f"jobs/{job_id}/"
    assert issued.access_key_id.startswith("CTJ")
    return Key(issued.access_key_id, issued.secret_access_key)


def forget_cached_keys(running: RunningApp) -> None:
    endpoint: StorageEndpoint = running.app.state.storage
    endpoint.resolver.forget()


async def test_a_job_key_is_limited_to_its_prefix(manual: RunningApp) -> None:
    job_a, job_b = await submit_job(manual), await submit_job(manual)
    key_a, key_b = await issue(manual, job_a), await issue(manual, job_b)

    put = await s3_call(manual, "PUT", f"/cloudtuner/jobs/{job_a}/model.safetensors", key_a, body=b"weights")
    assert put.status_code == 200, put.text
    got = await s3_call(manual, "GET", f"/cloudtuner/jobs/{job_a}/model.safetensors", key_a)
    assert got.content == b"weights"

    # Another job's key, on this job's prefix: refused, reading and writing.
    for method in ("GET", "PUT", "DELETE", "HEAD"):
        refused = await s3_call(
            manual, method, f"/cloudtuner/jobs/{job_a}/model.safetensors", key_b, body=b"x" if method == "PUT" else b""
        )
        assert refused.status_code == 403, (method, refused.text)
        if method != "HEAD":
            assert s3_code(refused) == "AccessDenied"
    listing = await s3_call(manual, "GET", f"/cloudtuner?list-type=2&prefix=jobs%2F{job_a}%2F", key_b)
    assert (listing.status_code, s3_code(listing)) == (403, "AccessDenied")
    # Outside any job prefix, or another bucket, or bucket-wide operations: refused too.
    for method, path in [
        ("PUT", f"/cloudtuner/jobs/{job_a}x/escape"),
        ("PUT", "/cloudtuner/shared.bin"),
        ("PUT", f"/otherbucket/jobs/{job_a}/x"),
        ("DELETE", "/cloudtuner"),
        ("PUT", "/newbucket"),
    ]:
        refused = await s3_call(manual, method, path, key_a, body=b"x" if path.count("/") > 1 else b"")
        assert (refused.status_code, s3_code(refused)) == (403, "AccessDenied"), path
    # Listing the bucket root is narrowed to the key's own prefix.
    mine = await s3_call(manual, "GET", "/cloudtuner?list-type=2", key_a)
    assert f"<Key>jobs/{job_a}/model.safetensors</Key>" in mine.text
    assert (await s3_call(manual, "GET", "/cloudtuner?list-type=2", key_b)).text.count("<Key>") == 0


async def test_issuing_again_reuses_the_key(manual: RunningApp) -> None:
    job = await submit_job(manual)
    first = await issue(manual, job)
    assert await issue(manual, job) == first
    fresh = await issue(manual, job, reuse=False)
    assert fresh != first
    await manual.client.delete(f"{CREDENTIALS}/{fresh.access_key_id}")
    await manual.client.delete(f"{CREDENTIALS}/{first.access_key_id}")
    third = await issue(manual, job)
    assert third not in (first, fresh)
    listed = (await manual.client.get(CREDENTIALS, params={"kind": "job"})).json()["credentials"]
    assert [(c["access_key_id"], c["job_id"], c["kind"]) for c in listed] == [(third.access_key_id, job, "job")]
    assert listed[0]["expires_at"] is None


async def test_issue_is_part_of_the_callers_transaction(manual: RunningApp) -> None:
    job = await submit_job(manual)

    class Rollback(Exception):
        pass

    async def issue_then_fail() -> None:
        async with manual.ctx.db.transaction() as session:
            await issue_job_storage_credentials(manual.ctx, session, job)
            raise Rollback

    with pytest.raises(Rollback):
        await issue_then_fail()
    async with manual.ctx.db.read() as session:
        assert await session.scalar(select(func.count()).select_from(StorageCredentialRow)) == 0
    with pytest.raises(JobNotFoundError):
        async with manual.ctx.db.transaction() as session:
            await issue_job_storage_credentials(manual.ctx, session, "01zzzzzzzzzzzzzzzzzzzzzzzz")


async def test_keys_expire_a_grace_period_after_the_job_ends(tmp_path: Path, database_url: str) -> None:
    settings = make_settings(tmp_path, database_url, scheduler_enabled=False, storage_credentials_grace_seconds=60)
    async with start_app(settings, ScriptedProvider()) as running:
        job = await submit_job(running)
        key = await issue(running, job)
        path = f"/cloudtuner/jobs/{job}/out.bin"
        assert (await s3_call(running, "PUT", path, key, body=b"1")).status_code == 200

        now = running.ctx.clock.now()
        async with running.ctx.db.transaction() as session:
            assert await expire_job_storage_credentials(session, job, now) == 1
        listed = (await running.client.get(CREDENTIALS, params={"kind": "job"})).json()["credentials"]
        assert listed[0]["status"] == "active"  # within the grace period
        forget_cached_keys(running)
        assert (await s3_call(running, "PUT", path, key, body=b"2")).status_code == 200

        # Ended long enough ago: the grace period is over.
        async with running.ctx.db.transaction() as session:
            assert await expire_job_storage_credentials(session, job, now - timedelta(seconds=61)) == 1
            # A later end never extends a key that already ends sooner.
            assert await expire_job_storage_credentials(session, job, now) == 0
        forget_cached_keys(running)
        refused = await s3_call(running, "PUT", path, key, body=b"3")
        assert (refused.status_code, s3_code(refused)) == (400, "ExpiredToken")
        assert (await running.client.get(CREDENTIALS, params={"kind": "job"})).json()["credentials"] == []
        everything = (await running.client.get(CREDENTIALS, params={"all": "true"})).json()["credentials"]
        assert [c["status"] for c in everything] == ["expired"]
        # A finished job's new key ends with the old one: issuing never revives a job's access.
        async with running.ctx.db.transaction() as session:
            job_row = await session.get(JobRow, job)
            assert job_row is not None
            job_row.finished_at = now - timedelta(seconds=61)
        again = await issue(running, job)
        assert again != key
        refused = await s3_call(running, "GET", path, again)
        assert (refused.status_code, s3_code(refused)) == (400, "ExpiredToken")


async def test_a_finished_job_ends_its_keys_even_without_the_expire_call(manual: RunningApp) -> None:
    job = await submit_job(manual)
    key = await issue(manual, job)
    grace = manual.ctx.settings.storage_credentials_grace_seconds
    async with manual.ctx.db.transaction() as session:
        job_row = await session.get(JobRow, job)
        assert job_row is not None
        job_row.finished_at = manual.ctx.clock.now() - timedelta(seconds=grace + 5)
    forget_cached_keys(manual)
    refused = await s3_call(manual, "GET", f"/cloudtuner?list-type=2&prefix=jobs%2F{job}%2F", key)
    assert (refused.status_code, s3_code(refused)) == (400, "ExpiredToken")


async def test_revoked_keys_are_left_alone_and_deleting_the_job_deletes_its_keys(manual: RunningApp) -> None:
    job = await submit_job(manual)
    revoked = await issue(manual, job)
    await manual.client.delete(f"{CREDENTIALS}/{revoked.access_key_id}")
    live = await issue(manual, job)
    async with manual.ctx.db.transaction() as session:
        assert await expire_job_storage_credentials(session, job, manual.ctx.clock.now()) == 1
    async with manual.ctx.db.transaction() as session:
        await session.execute(delete(JobRow).where(JobRow.id == job))
    async with manual.ctx.db.read() as session:
        assert await session.scalar(select(func.count()).select_from(StorageCredentialRow)) == 0
    forget_cached_keys(manual)
    refused = await s3_call(manual, "GET", "/cloudtuner", live)
    assert (refused.status_code, s3_code(refused)) == (403, "InvalidAccessKeyId")


async def test_housekeeping_deletes_stale_keys(manual: RunningApp) -> None:
    job = await submit_job(manual)
    old = await issue(manual, job)
    async with manual.ctx.db.transaction() as session:
        await expire_job_storage_credentials(session, job, manual.ctx.clock.now() - timedelta(days=30))
    await manual.client.post(CREDENTIALS, json={"name": "kept"})
    assert await delete_stale_storage_credentials(manual.ctx, older_than=timedelta(days=7)) == 1
    async with manual.ctx.db.read() as session:
        remaining = list(await session.scalars(select(StorageCredentialRow.access_key_id)))
    assert old.access_key_id not in remaining
    assert len(remaining) == 1


async def test_the_housekeeping_loop_deletes_keys_ended_a_month_ago(manual: RunningApp) -> None:
    month_old, week_old = await submit_job(manual), await submit_job(manual)
    old, recent = await issue(manual, month_old), await issue(manual, week_old)
    now = manual.ctx.clock.now()
    async with manual.ctx.db.transaction() as session:
        await expire_job_storage_credentials(session, month_old, now - STALE_KEY_RETENTION - timedelta(days=1))
        await expire_job_storage_credentials(session, week_old, now - timedelta(days=7))
    await manual.scheduler.run_housekeeping_once()
    async with manual.ctx.db.read() as session:
        remaining = set(await session.scalars(select(StorageCredentialRow.access_key_id)))
    assert old.access_key_id not in remaining
    assert recent.access_key_id in remaining


async def test_add_job_storage_credentials_awaits_nothing(manual: RunningApp) -> None:
    """The synchronous form, for a change run by JobUpdates: given the locked row, it only adds a row."""
    job_a, job_b = await submit_job(manual), await submit_job(manual)
    async with manual.ctx.db.transaction() as session:
        row = await session.get(JobRow, job_a, with_for_update=True)
        assert row is not None
        first = add_job_storage_credentials(manual.ctx, session, row)
        second = add_job_storage_credentials(manual.ctx, session, row)
    assert first != second  # every attempt gets its own key; both last until the job ends
    assert (first.bucket, first.prefix, first.expires_at) == ("cloudtuner", f"jobs/{job_a}/", None)
    key_b = await issue(manual, job_b)
    for issued in (first, second):
        key = Key(issued.access_key_id, issued.secret_access_key)
        assert (await s3_call(manual, "PUT", f"/cloudtuner/jobs/{job_a}/x", key, body=b"1")).status_code == 200
        refused = await s3_call(manual, "GET", f"/cloudtuner/jobs/{job_b}/x", key)
        assert (refused.status_code, s3_code(refused)) == (403, "AccessDenied")
    refused = await s3_call(manual, "GET", f"/cloudtuner/jobs/{job_a}/x", key_b)
    assert (refused.status_code, s3_code(refused)) == (403, "AccessDenied")


async def test_housekeeping_counts_a_job_key_from_its_jobs_end(manual: RunningApp) -> None:
    job = await submit_job(manual)
    await issue(manual, job)
    async with manual.ctx.db.transaction() as session:
        job_row = await session.get(JobRow, job)
        assert job_row is not None
        job_row.finished_at = manual.ctx.clock.now() - timedelta(days=3)
    assert await delete_stale_storage_credentials(manual.ctx, older_than=timedelta(days=7)) == 0
    assert await delete_stale_storage_credentials(manual.ctx, older_than=timedelta(days=2)) == 1
