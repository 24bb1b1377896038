"""Users and roles: creating and changing users, the last admin, what each role may do."""

from __future__ import annotations

import asyncio

import pytest

from cloudtuner.core.errors import LastAdminError
from cloudtuner.schemas.auth import UpdateUserRequest
from cloudtuner.services import users
from tests.integration.auth.support import ADMIN, PASSWORD, Team, bearer
from tests.integration.conftest import inline_job


async def test_create_list_get_update_delete(team: Team) -> None:
    admin = bearer(team.admin_token)
    created = await team.client.post(
        "/api/users", headers=admin, json={"username": "Alice", "password": PASSWORD, "role": "lead"}
    )
    assert created.status_code == 201, created.text
    user = created.json()["user"]
    assert user["username"] == "alice" and user["role"] == "lead" and "job.cancel.all" in user["permissions"]
    assert user["team"] is None
    assert "password" not in created.text.replace("password_", "")

    for body, code in (
        ({"username": "alice", "password": PASSWORD}, "user_exists"),
        ({"username": "bad name!", "password": PASSWORD}, "invalid_username"),
        ({"username": "bob", "password": "short"}, "weak_password"),
        ({"username": "bob", "password": PASSWORD, "role": "emperor"}, "invalid_scope"),
    ):
        refused = await team.client.post("/api/users", headers=admin, json=body)
        assert refused.json()["code"] == code, refused.text

    listed = (await team.client.get("/api/users", headers=admin)).json()["users"]
    assert [u["username"] for u in listed] == ["admin", "alice"]
    assert (await team.client.get("/api/users/ALICE", headers=admin)).json()["user"]["role"] == "lead"
    assert (await team.client.get("/api/users/nobody", headers=admin)).status_code == 404

    changed = await team.client.patch("/api/users/alice", headers=admin, json={"role": "viewer"})
    assert changed.json()["user"]["role"] == "viewer"
    assert (await team.client.patch("/api/users/alice", headers=admin, json={"nick": "x"})).status_code == 422
    assert (await team.client.delete("/api/users/alice", headers=admin)).status_code == 200
    assert (await team.client.get("/api/users/alice", headers=admin)).status_code == 404


async def test_the_last_admin_stays(team: Team) -> None:
    admin = bearer(team.admin_token)
    for method, body in (("PATCH", {"role": "lead"}), ("PATCH", {"active": False}), ("DELETE", None)):
        refused = await team.client.request(method, f"/api/users/{ADMIN}", headers=admin, json=body)
        assert refused.status_code == 409 and refused.json()["code"] == "last_admin", refused.text

    await team.user("root2", "admin")
    assert (await team.client.patch(f"/api/users/{ADMIN}", headers=admin, json={"role": "lead"})).status_code == 200
    assert (await team.client.get("/api/users", headers=admin)).status_code == 403  # a lead now


async def test_two_admins_demoting_each_other_leave_one(team: Team) -> None:
    await users.create_user(team.ctx, "root2", PASSWORD, "admin")
    results = await asyncio.gather(
        users.update_user(team.ctx, ADMIN, UpdateUserRequest(role="lead")),
        users.update_user(team.ctx, "root2", UpdateUserRequest(role="lead")),
        return_exceptions=True,
    )
    assert sorted(type(r).__name__ for r in results) == ["LastAdminError", "UserInfo"], results
    admins = [user.username for user in await users.list_users(team.ctx) if user.role == "admin"]
    assert len(admins) == 1
    with pytest.raises(LastAdminError):
        await users.delete_user(team.ctx, admins[0])


async def test_what_each_role_may_do(team: Team) -> None:
    tokens = {role: await team.user(f"{role}1", role) for role in ("viewer", "researcher", "lead")}
    job_id = (
        await team.client.post(
            "/api/cloud/jobs/submit?provider=scripted",
            headers=bearer(tokens["researcher"]),
            json=inline_job(**{"--scripted_outcome": "hang"}),  # still cancellable when the lead tries
        )
    ).json()["job_id"]

    async def status(role: str, method: str, path: str, **kwargs: object) -> int:
        reply = await team.client.request(method, path, headers=bearer(tokens[role]), **kwargs)  # type: ignore[arg-type]
        return reply.status_code

    assert await status("viewer", "GET", f"/api/cloud/jobs/{job_id}") == 200  # viewers see every job
    assert await status("viewer", "POST", "/api/cloud/jobs/submit?provider=scripted", json=inline_job()) == 403
    assert await status("viewer", "POST", f"/api/cloud/jobs/{job_id}/cancel") == 403
    assert await status("researcher", "PUT", "/api/cloud/providers/replicate/token", json={"token": "r8_x"}) == 403
    assert await status("researcher", "GET", "/api/audit") == 403
    assert await status("lead", "GET", "/api/users") == 403
    assert await status("lead", "POST", f"/api/cloud/jobs/{job_id}/cancel") == 200  # job.cancel.all
    assert (await team.client.get("/api/audit", headers=bearer(team.admin_token))).status_code == 200
