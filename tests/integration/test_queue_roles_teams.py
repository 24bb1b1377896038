"""The queue and who submits: starting priorities by role, teams, and the per-team limit."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select

from cloudtuner.core.errors import PermissionDeniedError
from cloudtuner.core.permissions import Principal
from cloudtuner.core.roles import Role, permissions_for
from cloudtuner.core.states import ACTIVE_STATES
from cloudtuner.db.tables import JobRow
from cloudtuner.scheduler.loops import Scheduler
from cloudtuner.schemas.auth import UpdateUserRequest
from cloudtuner.schemas.jobs import SubmitJobRequest
from cloudtuner.services import submissions, users
from tests.fakes.scripted_provider import ScriptedProvider
from tests.integration.auth.support import Team, bearer, start_team
from tests.integration.conftest import RunningApp, inline_job, make_settings, start_app

SUBMIT = "/api/cloud/jobs/submit?provider=scripted"
HANG = inline_job(**{"--scripted_outcome": "hang"})


def member(user_id: str, role: Role = Role.RESEARCHER, team: str | None = None) -> Principal:
    """Return a signed-in user's principal, as authentication builds it."""
    return Principal(id=user_id, name=user_id, permissions=permissions_for(role), role=role.value, team=team)


async def submit_as(running: RunningApp, principal: Principal, priority: int | None = None) -> str:
    result = await submissions.submit_job(
        running.ctx, principal, "scripted", SubmitJobRequest.model_validate(HANG), priority=priority
    )
    return result.job.job_id


async def stored(running: RunningApp, job_id: str) -> JobRow:
    async with running.ctx.db.read() as session:
        row = await session.get(JobRow, job_id)
    assert row is not None
    return row


async def busy_by_team(running: RunningApp) -> Counter[str | None]:
    async with running.ctx.db.read() as session:
        rows = await session.execute(select(JobRow.team).where(JobRow.status.in_([s.value for s in ACTIVE_STATES])))
    return Counter(team for (team,) in rows.all())


async def dispatch_rounds(*schedulers: Scheduler, rounds: int = 3) -> None:
    for _ in range(rounds):
        await asyncio.gather(*(s.run_dispatch_once() for s in schedulers))
        await asyncio.gather(*(s.drain() for s in schedulers))


@pytest.fixture
async def people(manual: RunningApp) -> Team:
    """Multi-user mode with no background scheduler: an admin, a lead and a researcher signed in."""
    team = await start_team(manual)
    await team.user("lena", "lead")
    await team.user("rob", "researcher")
    return team


async def test_jobs_start_at_their_role_priority(people: Team) -> None:
    async def submitted_priority(token: str) -> int:
        reply = await people.client.post(SUBMIT, headers=bearer(token), json=HANG)
        assert reply.status_code == 202, reply.text
        return (await stored(people.running, reply.json()["job_id"])).priority

    assert await submitted_priority(people.tokens["rob"]) == 0
    assert await submitted_priority(people.tokens["lena"]) == 10
    assert await submitted_priority(people.admin_token) == 20
    lead_key = await people.key(people.tokens["lena"], ["job.submit"])  # a key has its owner's role
    assert await submitted_priority(lead_key) == 10

    admin = bearer(people.admin_token)
    limits = (await people.client.get("/api/queue/limits", headers=admin)).json()
    assert limits["role_priorities"] == {"viewer": 0, "researcher": 0, "lead": 10, "admin": 20}
    changed = await people.client.put("/api/queue/limits", headers=admin, json={"role_priorities": {"researcher": 3}})
    assert changed.status_code == 200, changed.text
    assert changed.json()["role_priorities"] == {"viewer": 0, "researcher": 3, "lead": 10, "admin": 20}
    changed = await people.client.put("/api/queue/limits", headers=admin, json={"role_priorities": {"lead": 15}})
    assert changed.json()["role_priorities"]["researcher"] == 3  # the roles not named keep theirs
    assert await submitted_priority(people.tokens["rob"]) == 3
    assert await submitted_priority(people.tokens["lena"]) == 15

    for body in ({"role_priorities": {"emperor": 1}}, {"role_priorities": {"lead": 5000}}):
        assert (await people.client.put("/api/queue/limits", headers=admin, json=body)).status_code == 422
    researcher_change = await people.client.put(
        "/api/queue/limits", headers=bearer(people.tokens["rob"]), json={"role_priorities": {"researcher": 99}}
    )
    assert researcher_change.status_code == 403
    reset = await people.client.put("/api/queue/limits", headers=admin, json={"role_priorities": None})
    assert reset.json()["role_priorities"]["lead"] == 10 and reset.json()["role_priorities"]["researcher"] == 0


async def test_only_queue_managers_choose_a_priority_at_submission(manual: RunningApp) -> None:
    with pytest.raises(PermissionDeniedError, match=r"queue\.manage") as refused:
        await submit_as(manual, member("rob"), priority=50)
    assert "researcher" in refused.value.message
    assert await submit_as(manual, member("rob")) != ""
    job_id = await submit_as(manual, member("lena", Role.LEAD), priority=50)
    assert (await stored(manual, job_id)).priority == 50
    low = await submit_as(manual, member("lena", Role.LEAD), priority=-5)
    assert (await stored(manual, low)).priority == -5
    # Single-user mode: the local admin starts at the admin's default and may choose.
    reply = await manual.client.post(SUBMIT, json=HANG)
    assert (await stored(manual, reply.json()["job_id"])).priority == 20


async def test_submit_body_chooses_a_priority_for_queue_managers_only(people: Team) -> None:
    chosen = {**HANG, "priority": 7}
    refused = await people.client.post(SUBMIT, headers=bearer(people.tokens["rob"]), json=chosen)
    assert refused.status_code == 403 and "queue.manage" in refused.json()["detail"], refused.text
    accepted = await people.client.post(SUBMIT, headers=bearer(people.tokens["lena"]), json=chosen)
    assert accepted.status_code == 202, accepted.text
    assert (await stored(people.running, accepted.json()["job_id"])).priority == 7
    out_of_range = await people.client.post(SUBMIT, headers=bearer(people.admin_token), json={**HANG, "priority": 5000})
    assert out_of_range.status_code == 422


async def test_users_have_teams_and_jobs_keep_theirs(people: Team) -> None:
    admin = bearer(people.admin_token)
    created = await people.client.post(
        "/api/users",
        headers=admin,
        json={"username": "vic", "password": "correct horse battery", "role": "researcher", "team": " Vision "},
    )
    assert created.status_code == 201, created.text
    assert created.json()["user"]["team"] == "vision"
    bad = await people.client.post(
        "/api/users", headers=admin, json={"username": "x1", "password": "correct horse battery", "team": "a b"}
    )
    assert bad.status_code == 400 and "team name" in bad.json()["detail"], bad.text

    vic = await people.login("vic", "correct horse battery")
    first = (await people.client.post(SUBMIT, headers=bearer(vic), json=HANG)).json()["job_id"]
    assert (await stored(people.running, first)).team == "vision"

    moved = await people.client.patch("/api/users/vic", headers=admin, json={"team": "nlp"})
    assert moved.json()["user"]["team"] == "nlp"
    kept = await people.client.patch("/api/users/vic", headers=admin, json={"role": "lead"})
    assert kept.json()["user"]["team"] == "nlp"  # a change that does not name the team keeps it
    vic = await people.login("vic", "correct horse battery")
    second = (await people.client.post(SUBMIT, headers=bearer(vic), json=HANG)).json()["job_id"]
    assert (await stored(people.running, first)).team == "vision"  # jobs keep the team they were submitted under
    assert (await stored(people.running, second)).team == "nlp"

    cleared = await people.client.patch("/api/users/vic", headers=admin, json={"team": None})
    assert cleared.json()["user"]["team"] is None
    listed = (await people.client.get("/api/users", headers=admin)).json()["users"]
    assert {u["username"]: u["team"] for u in listed}["vic"] is None

    queue = (await people.client.get("/api/queue", headers=admin)).json()["jobs"]
    assert {(job["job_id"], job["owner"], job["team"]) for job in queue} >= {(first, "vic", "vision")}


async def test_submitter_of_an_api_key_is_read_from_its_owner(people: Team) -> None:
    await users.update_user(people.ctx, "rob", UpdateUserRequest(team="audio"))
    owner = await users.get_user(people.ctx, "rob")
    # An API key's principal carries no role or team: they are its owner's, read at submission.
    bare = Principal(id=owner.id, name="rob", permissions=permissions_for(Role.RESEARCHER))
    assert await users.find_submitter(people.ctx, bare) == users.Submitter(role=Role.RESEARCHER, team="audio")
    gone = Principal(id="01ARZ3NDEKTSV4RRFFQ69G5FAV", name="gone")
    assert await users.find_submitter(people.ctx, gone) == users.Submitter(role=Role.VIEWER, team=None)


async def test_per_team_limit_caps_busy_jobs_of_each_team(manual: RunningApp) -> None:
    response = await manual.client.put("/api/queue/limits", json={"max_concurrent_per_team": 1})
    assert response.status_code == 200 and response.json()["max_concurrent_per_team"] == 1
    for principal in (
        member("ann", team="vision"),
        member("avi", team="vision"),
        member("nia", team="nlp"),
        member("nia", team="nlp"),
        member("solo"),
        member("solo"),
    ):
        await submit_as(manual, principal)
    await dispatch_rounds(Scheduler(manual.ctx, owner="one"))
    # One job per team; jobs of no team count against no team limit.
    assert await busy_by_team(manual) == Counter({"vision": 1, "nlp": 1, None: 2})
    cleared = await manual.client.put("/api/queue/limits", json={"max_concurrent_per_team": None})
    assert cleared.json()["max_concurrent_per_team"] is None
    await dispatch_rounds(Scheduler(manual.ctx, owner="one"))
    assert await busy_by_team(manual) == Counter({"vision": 2, "nlp": 2, None: 2})


async def test_two_dispatchers_never_exceed_a_team_limit(tmp_path: Path, database_url: str) -> None:
    provider = ScriptedProvider()
    settings = make_settings(tmp_path, database_url, scheduler_enabled=False)
    second_settings = make_settings(tmp_path / "b", database_url, scheduler_enabled=False)
    async with start_app(settings, provider) as first, start_app(second_settings, provider) as second:
        response = await first.client.put("/api/queue/limits", json={"max_concurrent_per_team": 2})
        assert response.status_code == 200
        for index in range(12):
            await submit_as(first, member(f"user{index}", team="vision" if index % 2 else "nlp"))
        await dispatch_rounds(Scheduler(first.ctx, owner="one"), Scheduler(second.ctx, owner="two"), rounds=4)
        assert await busy_by_team(first) == Counter({"vision": 2, "nlp": 2})
        assert provider.run_job_calls == 4
