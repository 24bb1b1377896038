"""API keys: the seeds' example, scopes, the ways to send a key, revocation, expiry, lookup by hash."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import timedelta

from sqlalchemy import select, text, update

from cloudtuner.db.tables import ApiKeyRow
from cloudtuner.services import users
from tests.integration.auth.support import Team, bearer
from tests.integration.conftest import RunningApp, inline_job

SEED_KEY_REQUEST = """{
    "name": "ci-pipeline",
    "expires_days": 90,
    "scoped_permissions": ["job.submit", "job.view.own"]
  }"""


async def test_seed_api_key_example(team: Team) -> None:
    alice = await team.user("alice")
    bob = await team.user("bob")
    bobs_job = (
        await team.client.post("/api/cloud/jobs/submit?provider=scripted", headers=bearer(bob), json=inline_job())
    ).json()["job_id"]

    # The seeds' request, byte for byte, with YOUR_SESSION_TOKEN filled in.
    created = await team.client.post(
        "/api/cloud/auth/api-keys",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {alice}"},
        content=SEED_KEY_REQUEST,
    )
    assert created.status_code == 201, created.text
    body = created.json()
    key = body["key"]
    assert key.startswith("stk_") and len(key) > 40
    assert body["scoped_permissions"] == ["job.submit", "job.view.own"]
    assert body["name"] == "ci-pipeline" and body["owner"] == "alice" and body["status"] == "active"
    assert body["expires_at"] is not None and body["dropped_permissions"] == []

    # "Using an API key": submit with it (a run that does not end, so that Alice can cancel it below
    # however slow the machine is).
    submitted = await team.client.post(
        "/api/cloud/jobs/submit?provider=scripted",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
        content=json.dumps(inline_job(**{"--scripted_outcome": "hang"})),
    )
    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["job_id"]

    # It sees its own jobs (and its owner's session sees the same job)...
    listed = await team.client.get("/api/cloud/jobs", headers=bearer(key))
    assert [job["job_id"] for job in listed.json()["jobs"]] == [job_id]
    assert (await team.client.get(f"/api/cloud/jobs/{job_id}", headers=bearer(key))).status_code == 200
    assert (await team.client.get(f"/api/cloud/jobs/{job_id}/logs", headers=bearer(key))).status_code == 200
    assert (await team.client.get(f"/api/cloud/jobs/{job_id}", headers=bearer(alice))).status_code == 200

    # ... is refused others' jobs (reported as not found, so ids cannot be probed) ...
    for path in (f"/api/cloud/jobs/{bobs_job}", f"/api/cloud/jobs/{bobs_job}/logs"):
        refused = await team.client.get(path, headers=bearer(key))
        assert refused.status_code == 404 and refused.json()["code"] == "job_not_found", refused.text

    # ... and cannot cancel, its own job or anyone's: it lacks job.cancel.own.
    for target in (job_id, bobs_job):
        cancel = await team.client.post(f"/api/cloud/jobs/{target}/cancel", headers=bearer(key))
        assert cancel.status_code == 403, cancel.text
        assert cancel.json()["code"] == "permission_denied"
        assert "job.cancel.own" in cancel.json()["detail"]
    # Nor delete, sync, or touch settings.
    assert (await team.client.delete(f"/api/cloud/jobs/{job_id}", headers=bearer(key))).status_code == 403
    assert (await team.client.post("/api/cloud/jobs/sync", headers=bearer(key))).status_code == 403
    assert (await team.client.get("/api/cloud/settings", headers=bearer(key))).status_code == 403
    # Alice herself may cancel her job.
    mine = await team.client.post(f"/api/cloud/jobs/{job_id}/cancel", headers=bearer(alice))
    assert mine.status_code == 200, mine.text


async def test_every_way_to_send_a_key(team: Team) -> None:
    key = await team.key(team.admin_token, ["job.view.own"])
    basic = base64.b64encode(f"ci:{key}".encode()).decode()
    for headers in (bearer(key), {"X-API-Key": key}, {"Authorization": f"Basic {basic}"}):
        reply = await team.client.get("/api/auth/me", headers=headers)
        assert reply.status_code == 200, (headers, reply.text)
        me = reply.json()
        assert me["via"] == "api_key" and me["permissions"] == ["job.view.own"]
        assert me["user"]["username"] == "admin" and me["api_key"]["name"] == "ci-pipeline"
    # A Basic password that is not a key is someone else's (a proxy's): ignored, so anonymous.
    other = base64.b64encode(b"someone:hunter2").decode()
    anonymous = await team.client.get("/api/auth/me", headers={"Authorization": f"Basic {other}"})
    assert anonymous.status_code == 401 and anonymous.json()["code"] == "authentication_required"
    # A Bearer value that is neither kind of token is refused as such.
    garbage = await team.client.get("/api/auth/me", headers=bearer("not-a-token"))
    assert garbage.status_code == 401 and garbage.json()["code"] == "invalid_token"
    assert garbage.headers["WWW-Authenticate"].startswith("Bearer")


async def test_scopes_are_the_intersection_with_the_owners_permissions(team: Team) -> None:
    alice = await team.user("alice", "researcher")
    reply = await team.client.post(
        "/api/cloud/auth/api-keys",
        headers=bearer(alice),
        json={"name": "wide", "scoped_permissions": ["job.submit", "job.view.all", "user.manage"]},
    )
    assert reply.status_code == 201, reply.text
    assert reply.json()["scoped_permissions"] == ["job.submit"]
    assert reply.json()["dropped_permissions"] == ["job.view.all", "user.manage"]
    key = reply.json()["key"]
    assert (await team.client.get("/api/users", headers=bearer(key))).status_code == 403

    # Families expand; nothing of one's own at all is refused; unknown names are refused.
    family = await team.client.post(
        "/api/cloud/auth/api-keys", headers=bearer(alice), json={"name": "jobs", "scoped_permissions": ["job.*"]}
    )
    assert set(family.json()["scoped_permissions"]) == {
        "job.submit",
        "job.view.own",
        "job.cancel.own",
        "job.delete.own",
        "job.sync",
    }
    for scopes, code in ((["user.manage"], "invalid_scope"), (["job.fly"], "invalid_scope"), ([], "validation_error")):
        refused = await team.client.post(
            "/api/cloud/auth/api-keys", headers=bearer(alice), json={"name": "x", "scoped_permissions": scopes}
        )
        assert refused.json()["code"] == code, refused.text

    # A key cannot mint keys unless it holds account.manage, and never wider than itself.
    assert (
        await team.client.post(
            "/api/cloud/auth/api-keys", headers=bearer(key), json={"name": "y", "scoped_permissions": ["job.submit"]}
        )
    ).status_code == 403
    manager = await team.key(alice, ["account.manage", "job.view.own"], name="manager")
    minted = await team.client.post(
        "/api/cloud/auth/api-keys",
        headers=bearer(manager),
        json={"name": "child", "scoped_permissions": ["job.submit", "job.view.own"]},
    )
    assert minted.json()["scoped_permissions"] == ["job.view.own"], minted.text


async def test_owner_changes_apply_to_keys_at_once(team: Team) -> None:
    alice = await team.user("alice", "researcher")
    key = await team.key(alice, ["job.submit", "job.view.own"])
    assert (
        await team.client.post("/api/cloud/jobs/submit?provider=scripted", headers=bearer(key), json=inline_job())
    ).status_code == 202

    demote = await team.client.patch("/api/users/alice", headers=bearer(team.admin_token), json={"role": "viewer"})
    assert demote.status_code == 200, demote.text
    refused = await team.client.post("/api/cloud/jobs/submit?provider=scripted", headers=bearer(key), json=inline_job())
    assert refused.status_code == 403
    assert (await team.client.get("/api/cloud/jobs", headers=bearer(key))).status_code == 200

    await team.client.patch("/api/users/alice", headers=bearer(team.admin_token), json={"active": False})
    disabled = await team.client.get("/api/cloud/jobs", headers=bearer(key))
    assert disabled.status_code == 401 and "disabled" in disabled.json()["detail"]


async def test_list_revoke_expire_and_last_use(team: Team) -> None:
    key = await team.key(team.admin_token, ["job.view.own"], name="reader")
    other = await team.key(team.admin_token, ["job.view.own"], name="other")
    listed = (await team.client.get("/api/cloud/auth/api-keys", headers=bearer(team.admin_token))).json()["api_keys"]
    assert [k["name"] for k in listed] == ["other", "reader"]
    assert all(k["last_used_at"] is None and "key" not in k for k in listed)
    reader = next(k for k in listed if k["name"] == "reader")
    assert key.startswith(reader["prefix"]) and len(reader["prefix"]) < 16

    assert (await team.client.get("/api/cloud/jobs", headers=bearer(key))).status_code == 200
    listed = (await team.client.get("/api/cloud/auth/api-keys", headers=bearer(team.admin_token))).json()["api_keys"]
    assert next(k for k in listed if k["name"] == "reader")["last_used_at"] is not None

    revoked = await team.client.delete(f"/api/cloud/auth/api-keys/{reader['id']}", headers=bearer(team.admin_token))
    assert revoked.status_code == 200 and revoked.json()["api_key"]["status"] == "revoked"
    after = await team.client.get("/api/cloud/jobs", headers=bearer(key))
    assert after.status_code == 401 and "revoked" in after.json()["detail"]

    async with team.ctx.db.transaction() as session:
        await session.execute(
            update(ApiKeyRow)
            .where(ApiKeyRow.name == "other")
            .values(expires_at=team.ctx.clock.now() - timedelta(seconds=1))
        )
    expired = await team.client.get("/api/cloud/jobs", headers=bearer(other))
    assert expired.status_code == 401 and "expired" in expired.json()["detail"]
    statuses = {
        k["name"]: k["status"]
        for k in (await team.client.get("/api/cloud/auth/api-keys", headers=bearer(team.admin_token))).json()[
            "api_keys"
        ]
    }
    assert statuses == {"reader": "revoked", "other": "expired"}


async def test_keys_belong_to_their_owner(team: Team) -> None:
    alice = await team.user("alice")
    bob = await team.user("bob")
    await team.key(alice, ["job.view.own"], name="alices")
    bobs = await team.client.get("/api/cloud/auth/api-keys", headers=bearer(bob))
    assert bobs.json()["api_keys"] == []
    alices_id = (await team.client.get("/api/cloud/auth/api-keys", headers=bearer(alice))).json()["api_keys"][0]["id"]
    stolen = await team.client.delete(f"/api/cloud/auth/api-keys/{alices_id}", headers=bearer(bob))
    assert stolen.status_code == 404 and stolen.json()["code"] == "api_key_not_found"
    assert (await team.client.get("/api/cloud/auth/api-keys?all=true", headers=bearer(bob))).status_code == 403
    everyone = await team.client.get("/api/cloud/auth/api-keys?all=true", headers=bearer(team.admin_token))
    assert [k["owner"] for k in everyone.json()["api_keys"]] == ["alice"]
    # Deleting a user deletes their keys.
    assert (await team.client.delete("/api/users/alice", headers=bearer(team.admin_token))).status_code == 200
    everyone = await team.client.get("/api/cloud/auth/api-keys?all=true", headers=bearer(team.admin_token))
    assert everyone.json()["api_keys"] == []


async def test_only_the_hash_is_stored_and_found_by_index(team: Team) -> None:
    key = await team.key(team.admin_token, ["job.view.own"])
    async with team.ctx.db.read() as session:
        rows = (await session.scalars(select(ApiKeyRow))).all()
        dump = json.dumps([[str(v) for v in row.__dict__.values()] for row in rows])
        indexes = (
            await session.execute(
                text("SELECT sql FROM sqlite_master WHERE name = 'ix_api_keys_key_hash'")
                if team.ctx.db.dialect.name == "sqlite"
                else text("SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_api_keys_key_hash'")
            )
        ).scalar_one()
    assert key not in dump and key[len(rows[0].prefix) :] not in dump
    assert rows[0].key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert "UNIQUE" in indexes.upper()


async def test_single_user_mode_has_no_keys(running: RunningApp) -> None:
    reply = await running.client.post(
        "/api/cloud/auth/api-keys", json={"name": "ci", "scoped_permissions": ["job.submit"]}
    )
    assert reply.status_code == 409 and reply.json()["code"] == "single_user_mode", reply.text
    assert "cloudtuner admin create" in reply.json()["detail"]
    login = await running.client.post("/api/auth/login", json={"username": "admin", "password": "whatever it is"})
    assert login.status_code == 409 and login.json()["code"] == "single_user_mode", login.text
    me = (await running.client.get("/api/auth/me")).json()
    assert me["mode"] == "single_user" and me["via"] == "local" and "user.manage" in me["permissions"]
    # Once a user exists, the same anonymous request is refused.
    await users.create_user(running.ctx, "admin", "correct horse battery staple", "admin")
    assert (await running.client.get("/api/auth/me")).status_code == 401
