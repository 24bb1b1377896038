"""Two server processes on one PostgreSQL database share the queue without running a job twice."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.e2e.harness import ServerFactory, inline_job, scripted_runs
from tests.support.waiting import wait_until_sync

JOBS = 20


@pytest.mark.postgres
def test_two_servers_share_one_database(postgres_database_url: str, servers: ServerFactory) -> None:
    first = servers.create("first", database_url=postgres_database_url)
    second = servers.create("second", database_url=postgres_database_url)
    assert first.state_path == second.state_path
    # Started together: both migrate the same empty database at once.
    first.launch()
    second.launch()
    first.wait_ready()
    second.wait_ready()

    job_ids = [(first, second)[n % 2].submit(inline_job()) for n in range(JOBS)]
    assert len(set(job_ids)) == JOBS

    def statuses() -> dict[str, str]:
        with first.http() as http:
            reply = http.get("/api/cloud/jobs", params={"limit": 100})
        assert reply.status_code == 200, reply.text
        return {job["job_id"]: job["status"] for job in reply.json()["jobs"]}

    final = wait_until_sync(
        statuses, lambda seen: all(seen.get(job_id) == "completed" for job_id in job_ids), timeout=60, interval=0.2
    )
    assert set(final) == set(job_ids), final

    with second.http() as http:
        seen_by_second = {job["job_id"]: job["status"] for job in http.get("/api/cloud/jobs?limit=100").json()["jobs"]}
    assert seen_by_second == final

    runs = scripted_runs(first.state_path)
    per_job = Counter(run["reference"] for run in runs)
    assert per_job == dict.fromkeys(job_ids, 1), per_job
    for job_id in job_ids:
        assert first.job(job_id)["dispatch_attempts"] == 1

    first.stop()
    second.stop()
