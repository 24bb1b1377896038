"""The queue with 50 jobs against a real server: limits and priorities decide what workers get.

Two simulated workers speak the worker protocol over HTTP (as `cloudtuner worker` does) to a
real `cloudtuner server` process. The queue lets three jobs be busy at once; 40 jobs are
submitted at the default priority, then 10 urgent ones. Every job runs once; no more than three
are ever busy; the urgent jobs are handed out before the older ones still waiting, and jobs of
one priority in the order they came.
"""

from __future__ import annotations

import threading
from typing import Any

import httpx

from tests.e2e.harness import ServerProcess
from tests.support.waiting import wait_until_sync

JOB: dict[str, Any] = {
    "config": {"--model_family": "flux", "--model_type": "lora", "--max_train_steps": 1},
    "dataloader_config": [{"id": "remote", "type": "huggingface", "dataset_type": "image", "dataset_name": "x/y"}],
}
LIMIT = 3
BUSY = ("uploading", "starting", "running")


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _submit(http: httpx.Client, **fields: Any) -> str:
    reply = http.post("/api/cloud/jobs/submit", params={"provider": "worker"}, json={**JOB, **fields})
    assert reply.status_code == 202, reply.text
    job_id: str = reply.json()["job_id"]
    return job_id


def _busy(http: httpx.Client) -> list[str]:
    reply = http.get("/api/cloud/jobs", params={"status": ",".join(BUSY), "limit": 100})
    assert reply.status_code == 200, reply.text
    return [job["job_id"] for job in reply.json()["jobs"]]


def test_fifty_queued_jobs_follow_the_limits_and_priorities(server: ServerProcess) -> None:
    with server.http() as http:
        limits = http.put("/api/queue/limits", json={"max_concurrent": LIMIT})
        assert limits.status_code == 200, limits.text
        tokens = []
        for name in ("w1", "w2"):
            created = http.post("/api/admin/workers", json={"name": name})
            assert created.status_code in (200, 201), created.text
            token = created.json()["token"]
            assert http.post("/api/worker/register", json={}, headers=_bearer(token)).status_code == 200
            tokens.append(token)

        usual = [_submit(http) for _ in range(40)]
        wait_until_sync(lambda: len(_busy(http)), lambda n: n == LIMIT, timeout=10)
        first_busy = set(_busy(http))
        assert first_busy == set(usual[:LIMIT]), "the oldest jobs start first"
        urgent = [_submit(http, priority=50) for _ in range(10)]
        queue = http.get("/api/queue").json()
        assert queue["depth"] == 47 and [job["job_id"] for job in queue["jobs"][:10]] == urgent, queue

        claimed: list[str] = []
        most_busy = 0
        problems: list[str] = []
        lock = threading.Lock()

        def work(token: str) -> None:
            nonlocal most_busy
            with server.http() as own:
                while True:
                    with lock:
                        if len(claimed) >= 50:
                            return
                    with lock:  # claims one at a time, so that the list is in the server's order
                        reply = own.post("/api/worker/claim", json={"wait_seconds": 0.2}, headers=_bearer(token))
                        job = reply.json()["job"]
                        if job is None:
                            continue
                        claimed.append(job["job_id"])
                        most_busy = max(most_busy, len(_busy(own)))
                    result = own.post(
                        f"/api/worker/jobs/{job['job_id']}/result",
                        json={"lease_token": job["lease_token"], "status": "completed"},
                        headers=_bearer(token),
                    )
                    if result.status_code != 200 or not result.json()["accepted"]:
                        problems.append(result.text)

        threads = [threading.Thread(target=work, args=(token,)) for token in tokens]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not any(thread.is_alive() for thread in threads), "the workers did not finish in 2 minutes"

        assert problems == []
        assert sorted(claimed) == sorted(usual + urgent), "every job ran exactly once"
        assert most_busy <= LIMIT, f"{most_busy} jobs were busy at once; the limit is {LIMIT}"
        # The three started before the urgent jobs came are claimed first, then every urgent job,
        # then the rest in the order they came (give or take the few dispatched at once, which
        # workers take in any order).
        assert set(claimed[:LIMIT]) == first_busy, claimed
        assert set(claimed[LIMIT : LIMIT + 10]) == set(urgent), claimed
        rest = claimed[LIMIT + 10 :]
        assert sorted(rest) == sorted(usual[LIMIT:])
        assert all(abs(rest.index(job_id) - n) < LIMIT for n, job_id in enumerate(usual[LIMIT:])), rest
        done = wait_until_sync(
            lambda: http.get("/api/cloud/jobs", params={"status": "completed", "limit": 100}).json()["jobs"],
            lambda jobs: len(jobs) == 50,
            timeout=30,
        )
        assert {job["provider"] for job in done} == {"worker"}
