"""Users see and act on their own jobs unless they hold the ``*.all`` permissions."""

from __future__ import annotations

from tests.integration.auth.support import Team, bearer
from tests.integration.conftest import inline_job
from tests.support.waiting import wait_until


async def submit(team: Team, token: str, **config: object) -> str:
    reply = await team.client.post(
        "/api/cloud/jobs/submit?provider=scripted", headers=bearer(token), json=inline_job(**config)
    )
    assert reply.status_code == 202, reply.text
    job_id: str = reply.json()["job_id"]
    return job_id


async def wait_finished(team: Team, token: str, job_id: str) -> None:
    async def status() -> str:
        reply = await team.client.get(f"/api/cloud/jobs/{job_id}", headers=bearer(token))
        value: str = reply.json()["job"]["status"]
        return value

    await wait_until(status, lambda s: s in {"completed", "failed", "cancelled"}, timeout=30)


async def test_researchers_see_and_act_on_their_own_jobs_only(team: Team) -> None:
    alice = await team.user("alice")
    bob = await team.user("bob")
    alices = await submit(team, alice, **{"--scripted_seconds": 30})
    bobs = await submit(team, bob, **{"--scripted_seconds": 0.1})
    await wait_finished(team, bob, bobs)

    listed = (await team.client.get("/api/cloud/jobs", headers=bearer(alice))).json()["jobs"]
    assert [job["job_id"] for job in listed] == [alices]
    for method, path in (
        ("GET", f"/api/cloud/jobs/{bobs}"),
        ("GET", f"/api/cloud/jobs/{bobs}/logs"),
        ("POST", f"/api/cloud/jobs/{bobs}/cancel"),
        ("DELETE", f"/api/cloud/jobs/{bobs}"),
    ):
        reply = await team.client.request(method, path, headers=bearer(alice))
        assert reply.status_code == 404 and reply.json()["code"] == "job_not_found", (method, path, reply.text)

    # Syncing touches only one's own jobs.
    synced = await team.client.post("/api/cloud/jobs/sync", headers=bearer(bob))
    assert synced.status_code == 200, synced.text
    assert (await team.client.get(f"/api/cloud/jobs/{alices}", headers=bearer(alice))).json()["job"]["status"] != (
        "cancelled"
    )

    # Their own: cancel, then delete.
    assert (await team.client.post(f"/api/cloud/jobs/{alices}/cancel", headers=bearer(alice))).status_code == 200
    await wait_finished(team, alice, alices)
    assert (await team.client.delete(f"/api/cloud/jobs/{alices}", headers=bearer(alice))).status_code == 200
    assert (await team.client.delete(f"/api/cloud/jobs/{bobs}", headers=bearer(bob))).status_code == 200


async def test_leads_and_admins_act_on_everyones_jobs(team: Team) -> None:
    alice = await team.user("alice")
    lead = await team.user("lena", "lead")
    first = await submit(team, alice, **{"--scripted_seconds": 30})
    second = await submit(team, alice, **{"--scripted_seconds": 0.1})

    everyone = (await team.client.get("/api/cloud/jobs", headers=bearer(lead))).json()["jobs"]
    assert {job["job_id"] for job in everyone} == {first, second}
    assert (await team.client.get(f"/api/cloud/jobs/{first}/logs", headers=bearer(lead))).status_code == 200
    assert (await team.client.post(f"/api/cloud/jobs/{first}/cancel", headers=bearer(lead))).status_code == 200
    await wait_finished(team, alice, second)
    assert (await team.client.delete(f"/api/cloud/jobs/{second}", headers=bearer(team.admin_token))).status_code == 200

    # A key of the lead's scoped to the own-only permissions sees only the lead's jobs.
    key = await team.key(lead, ["job.view.own"])
    assert (await team.client.get("/api/cloud/jobs", headers=bearer(key))).json()["jobs"] == []
    assert (await team.client.get(f"/api/cloud/jobs/{first}", headers=bearer(key))).status_code == 404


async def test_only_those_who_see_every_job_import_foreign_runs(team: Team) -> None:
    alice = await team.user("alice")
    run_id = team.running.provider.add_foreign_run()
    mine = await team.client.post("/api/cloud/jobs/sync", headers=bearer(alice))
    assert mine.status_code == 200 and mine.json()["imported"] == 0, mine.text
    admins = await team.client.post("/api/cloud/jobs/sync", headers=bearer(team.admin_token))
    assert admins.json()["imported"] == 1
    jobs = (await team.client.get("/api/cloud/jobs", headers=bearer(team.admin_token))).json()["jobs"]
    assert [job["provider_job_id"] for job in jobs] == [run_id]
    assert (await team.client.get("/api/cloud/jobs", headers=bearer(alice))).json()["jobs"] == []
