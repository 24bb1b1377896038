"""Restarts on the same data dir: after a crash right after the provider accepted a run, the
restarted server finishes the job with that run and no second run is made; after a clean stop,
every job is where it was."""

from __future__ import annotations

from tests.e2e.harness import ServerFactory, inline_job, runs_for

CRASH_EXIT_CODE = 17


def test_crash_after_the_provider_accepted_the_run(database_url: str | None, servers: ServerFactory) -> None:
    del database_url
    server = servers.start()
    job_id = server.submit(inline_job(**{"--scripted_crash_after_accept": "exit"}))

    # The scripted provider creates the run, then the whole server process exits.
    assert server.wait_exit(timeout=30) == CRASH_EXIT_CODE
    runs = runs_for(server.state_path, job_id)
    assert len(runs) == 1, runs

    # Same port, data dir, database and provider state.
    server.start()
    job = server.wait_for_status(job_id, "completed", timeout=45)
    assert job["provider_job_id"] == runs[0]["id"], job
    assert job["dispatch_attempts"] == 1, job
    assert runs_for(server.state_path, job_id) == runs
    causes = [event["cause"] for event in job["events"]]
    assert "found the run after an interrupted start" in causes, job["events"]

    # A clean stop (SIGTERM) and another start: a running job is still running, and only once.
    hanging = server.submit(inline_job(**{"--scripted_outcome": "hang"}))
    server.wait_for_status(hanging, "running")
    server.stop()
    server.start()
    assert server.job(job_id)["status"] == "completed"
    assert server.job(hanging)["status"] == "running"
    with server.http() as http:
        cancelled = http.post(f"/api/cloud/jobs/{hanging}/cancel").json()
    assert cancelled["status"] == "cancelled", cancelled
    assert len(runs_for(server.state_path, hanging)) == 1
    assert runs_for(server.state_path, job_id) == runs

    server.stop()
