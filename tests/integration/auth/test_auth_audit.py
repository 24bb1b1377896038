"""The audit log: what is recorded, the hash chain, tampering, retention, concurrent writers."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select, update

from cloudtuner.db.tables import AuditEntryRow, AuditStateRow
from cloudtuner.services import audit
from cloudtuner.services.audit import AuditEvent, append_entries
from tests.integration.auth.support import ADMIN, Team, bearer
from tests.integration.conftest import RunningApp, inline_job
from tests.support.waiting import wait_until

REPLICATE_TOKEN = "r8_auditTokenThatMustNeverBeLogged0001"


async def entries(team: Team, **params: Any) -> list[dict[str, Any]]:
    reply = await team.client.get("/api/audit", headers=bearer(team.admin_token), params={"limit": 500, **params})
    assert reply.status_code == 200, reply.text
    found: list[dict[str, Any]] = reply.json()["entries"]
    return found


async def test_every_change_is_recorded_with_actor_target_address_and_outcome(team: Team) -> None:
    admin = bearer(team.admin_token)
    alice = await team.user("alice")
    key = await team.key(alice, ["job.submit", "job.view.own"])
    job_id = (
        await team.client.post("/api/cloud/jobs/submit?provider=scripted", headers=bearer(key), json=inline_job())
    ).json()["job_id"]
    await team.client.post(f"/api/cloud/jobs/{job_id}/cancel", headers=bearer(alice))

    async def status() -> str:
        value: str = (await team.client.get(f"/api/cloud/jobs/{job_id}", headers=admin)).json()["job"]["status"]
        return value

    await wait_until(status, lambda s: s == "cancelled")
    await team.client.delete(f"/api/cloud/jobs/{job_id}", headers=bearer(alice))
    await team.client.put("/api/cloud/providers/replicate/token", headers=admin, json={"token": REPLICATE_TOKEN})
    await team.client.put("/api/cloud/settings", headers=admin, json={"upload_consent": "always_allow"})
    await team.client.patch("/api/users/alice", headers=admin, json={"role": "lead"})
    key_id = (await team.client.get("/api/cloud/auth/api-keys", headers=bearer(alice))).json()["api_keys"][0]["id"]
    await team.client.delete(f"/api/cloud/auth/api-keys/{key_id}", headers=bearer(alice))
    await team.client.post("/api/auth/login", json={"username": "alice", "password": "wrong password"})
    await team.client.post("/api/cloud/jobs/submit?provider=scripted", json=inline_job())  # anonymous
    await team.client.get("/api/cloud/jobs", headers=admin)  # reads are not recorded

    log = list(reversed(await entries(team)))
    actions = [(e["action"], e["actor_name"], e["outcome"]) for e in log]
    assert actions == [
        ("login", "admin", "success"),
        ("login", "alice", "success"),
        ("create_api_key", "alice", "success"),
        ("submit_job", "alice", "success"),
        ("cancel_job", "alice", "success"),
        ("delete_job", "alice", "success"),
        ("put_token", "admin", "success"),
        ("put_cloud_settings", "admin", "success"),
        ("update_user", "admin", "success"),
        ("revoke_api_key", "alice", "success"),
        ("login", "alice", "failed"),
        ("submit_job", "anonymous", "denied"),
    ], actions
    submit = log[3]
    assert submit["via"] == "api_key" and submit["detail"]["job_id"] == job_id
    assert submit["detail"]["api_key"] == key_id and submit["status"] == 202
    assert submit["target"] == "/api/cloud/jobs/submit" and submit["source_ip"] == "127.0.0.1"
    assert log[4]["target"] == f"/api/cloud/jobs/{job_id}/cancel" and log[4]["via"] == "session"
    assert log[-2]["status"] == 401 and log[-2]["detail"] == {"error": "invalid_credentials"}
    assert log[-1]["status"] == 401 and log[-1]["via"] == "none"
    assert REPLICATE_TOKEN not in json.dumps(log)
    assert {e["actor_name"] for e in await entries(team, actor="alice")} == {"alice"}
    assert [e["action"] for e in await entries(team, action="put_token")] == ["put_token"]

    verified = (await team.client.get("/api/audit/verify", headers=admin)).json()
    assert verified["valid"] is True and verified["checked"] == len(log) and verified["head_seq"] == len(log)


async def test_single_user_mode_records_the_local_user(running: RunningApp) -> None:
    await running.client.put("/api/cloud/settings", json={"upload_consent": "always_allow"})
    listed = (await running.client.get("/api/audit")).json()["entries"]
    assert [(e["action"], e["actor_name"], e["via"]) for e in listed] == [("put_cloud_settings", "local", "local")]


async def test_paging(team: Team) -> None:
    for _ in range(5):
        await team.login(ADMIN)
    first = (await team.client.get("/api/audit?limit=4", headers=bearer(team.admin_token))).json()
    assert [e["seq"] for e in first["entries"]] == [6, 5, 4, 3] and first["next_before"] == 3
    rest = (await team.client.get("/api/audit?limit=4&before=3", headers=bearer(team.admin_token))).json()
    assert [e["seq"] for e in rest["entries"]] == [2, 1] and rest["next_before"] is None


async def _seed(team: Team, count: int, days_ago: float = 0) -> None:
    events = [
        AuditEvent(actor_id="t", actor_name="t", via="cli", action=f"test_{i}", target="/x", outcome="success")
        for i in range(count)
    ]
    async with team.ctx.db.transaction() as session:
        await append_entries(session, events, team.ctx.clock.now() - timedelta(days=days_ago))


async def test_tampering_is_detected(team: Team) -> None:
    await _seed(team, 6)
    verify = audit.verify_chain
    assert (await verify(team.ctx)).valid

    async with team.ctx.db.transaction() as session:
        await session.execute(update(AuditEntryRow).where(AuditEntryRow.seq == 3).values(target="/elsewhere"))
    changed = await verify(team.ctx)
    assert not changed.valid and changed.broken_at == 3 and "hash" in (changed.problem or "")
    async with team.ctx.db.transaction() as session:
        await session.execute(update(AuditEntryRow).where(AuditEntryRow.seq == 3).values(target="/x"))
    assert (await verify(team.ctx)).valid

    async with team.ctx.db.transaction() as session:
        await session.execute(delete(AuditEntryRow).where(AuditEntryRow.seq == 5))
    removed = await verify(team.ctx)
    assert not removed.valid and removed.broken_at == 5

    async with team.ctx.db.transaction() as session:
        await session.execute(delete(AuditEntryRow).where(AuditEntryRow.seq >= 5))
    truncated = await verify(team.ctx)
    assert not truncated.valid and truncated.broken_at == 5 and "newest" in (truncated.problem or "")
    reply = await team.client.get("/api/audit/verify", headers=bearer(team.admin_token))
    assert reply.status_code == 200 and reply.json()["valid"] is False


async def test_retention_keeps_the_chain_verifiable(team: Team) -> None:
    await _seed(team, 5, days_ago=400)
    await _seed(team, 3, days_ago=10)
    before = await audit.verify_chain(team.ctx)
    assert before.valid and before.checked == 9  # with the admin's sign-in

    deleted = await audit.apply_retention(team.ctx)
    assert deleted == 6  # the sign-in was recorded first, before the old entries were seeded
    after = await audit.verify_chain(team.ctx)
    assert after.valid, after
    assert after.anchor_seq == 6 and after.first_seq == 7 and after.head_seq == 10 and after.checked == 4
    newest = (await entries(team))[0]
    assert newest["action"] == "audit_retention" and newest["detail"]["deleted"] == 6
    assert await audit.apply_retention(team.ctx) == 0

    # Moving the anchor without a retention entry that names it is caught.
    async with team.ctx.db.transaction() as session:
        await session.execute(delete(AuditEntryRow).where(AuditEntryRow.seq <= 7))
        state = await session.get(AuditStateRow, 1)
        assert state is not None
        state.anchor_seq = 7
        state.anchor_hash = (await session.scalar(select(AuditEntryRow.prev_hash).where(AuditEntryRow.seq == 8))) or ""
    moved = await audit.verify_chain(team.ctx)
    assert not moved.valid and "retention" in (moved.problem or ""), moved


async def test_concurrent_writers_build_one_chain(team: Team) -> None:
    event = AuditEvent(actor_id="t", actor_name="t", via="cli", action="burst", target="/x", outcome="success")
    await asyncio.gather(*(team.ctx.audit.record(event) for _ in range(60)))
    # A second log writing to the same store (another server process) interleaves safely.
    other = audit.AuditLog(team.ctx.db, team.ctx.clock)
    await asyncio.gather(*(log.record(event) for log in (team.ctx.audit, other) for _ in range(20)))
    result = await audit.verify_chain(team.ctx)
    assert result.valid and result.checked == 101, result
