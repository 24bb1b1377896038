"""GET /api/metrics and the Prometheus exposition at /metrics, on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update

from cloudtuner.db.tables import JobRow
from tests.integration.conftest import RunningApp, inline_job
from tests.support.waiting import wait_until


async def run_jobs(app: RunningApp, outcomes: list[str]) -> list[str]:
    """Submit one job per outcome (complete, fail, hang) and wait until the first two kinds end."""
    job_ids = []
    for outcome in outcomes:
        body = inline_job(**{"--scripted_outcome": outcome, "--scripted_seconds": 0.2})
        reply = await app.client.post("/api/cloud/jobs/submit", params={"provider": "scripted"}, json=body)
        assert reply.status_code == 202, reply.text
        job_ids.append(reply.json()["job_id"])

    async def statuses() -> list[str]:
        return [(await app.client.get(f"/api/cloud/jobs/{job_id}")).json()["job"]["status"] for job_id in job_ids]

    expected = ["completed" if o == "complete" else "failed" if o == "fail" else "running" for o in outcomes]
    await wait_until(statuses, lambda found: found == expected, timeout=20)
    return job_ids


async def test_job_metrics_count_spend_durations_and_success(running: RunningApp) -> None:
    job_ids = await run_jobs(running, ["complete", "complete", "fail", "hang"])
    cancelled = await running.client.post(f"/api/cloud/jobs/{job_ids[3]}/cancel")
    assert cancelled.json()["status"] == "cancelled", cancelled.text

    reply = await running.client.get("/api/metrics", params={"days": 7})
    assert reply.status_code == 200, reply.text
    metrics: dict[str, Any] = reply.json()
    assert metrics["jobs_total"] == 4
    assert metrics["jobs_by_status"] == {"cancelled": 1, "completed": 2, "failed": 1}, metrics
    assert metrics["jobs_by_provider"] == {"scripted": {"cancelled": 1, "completed": 2, "failed": 1}}
    assert metrics["success_rate"] == 0.6667, "completed / (completed + failed)"
    assert metrics["total_spent_usd"] > 0
    days = metrics["spend_by_day"]
    assert len(days) == 7 and days[-1]["key"] == datetime.now(UTC).date().isoformat(), days
    assert sum(day["spent_usd"] for day in days) == pytest.approx(metrics["total_spent_usd"], abs=1e-4)
    (by_provider,) = metrics["spend_by_provider"]
    assert by_provider["key"] == "scripted" and by_provider["jobs"] == 4
    assert metrics["spend_by_hardware"][0]["key"] == "scripted-gpu", metrics["spend_by_hardware"]
    durations = metrics["durations"]
    assert durations["finished_jobs"] == 4 and durations["average_run_seconds"] > 0, durations
    assert metrics["durations_by_provider"]["scripted"]["finished_jobs"] == 4

    # A day counts every job submitted on it, as the provider and hardware buckets do, also one
    # that has cost nothing (cancelled before it ran).
    async with running.ctx.db.transaction() as session:
        await session.execute(update(JobRow).where(JobRow.id == job_ids[3]).values(cost_usd=0.0))
    recounted = (await running.client.get("/api/metrics", params={"days": 7})).json()
    assert sum(day["jobs"] for day in recounted["spend_by_day"]) == 4, recounted["spend_by_day"]
    assert recounted["spend_by_provider"][0]["jobs"] == 4

    other = await running.client.get("/api/metrics", params={"provider": "scripted", "since": "2020-01-01T00:00:00Z"})
    assert other.status_code == 400 and "longer than 366 days" in other.json()["detail"], other.text
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    empty = await running.client.get("/api/metrics", params={"since": future, "until": future})
    assert empty.status_code == 400 and empty.json()["code"] == "invalid_request"
    unknown = await running.client.get("/api/metrics", params={"provider": "nope"})
    assert unknown.status_code == 400 and unknown.json()["code"] == "unknown_provider"


def sample(text: str, name: str, **labels: str) -> float:
    """Return the value of one sample of the exposition; fail if it is not there."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        match = re.fullmatch(r"([a-z_]+)(?:\{(.*)\})? (\S+)", line)
        assert match, f"not a sample line: {line!r}"
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(2) or ""))
        if match.group(1) == name and found == labels:
            return float(match.group(3))
    raise AssertionError(f"no sample {name} {labels} in:\n{text}")


async def test_prometheus_exposition(running: RunningApp) -> None:
    await run_jobs(running, ["complete", "fail"])
    await running.client.put(
        "/api/cloud/providers/scripted",
        json={"cost_limit": {"enabled": True, "amount": 10, "period": "monthly", "action": "warn"}},
    )
    refused = await running.client.post("/api/webhooks/scripted", content=b"{}", headers={"x-scripted-signature": "x"})
    assert refused.status_code == 401

    reply = await running.client.get("/metrics")
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = reply.text
    assert sample(text, "cloudtuner_jobs", provider="scripted", state="completed") == 1
    assert sample(text, "cloudtuner_jobs", provider="scripted", state="failed") == 1
    assert sample(text, "cloudtuner_jobs", provider="replicate", state="running") == 0
    assert sample(text, "cloudtuner_queue_depth", provider="scripted") == 0
    assert sample(text, "cloudtuner_spend_usd", provider="scripted", hardware="scripted-gpu") > 0
    assert sample(text, "cloudtuner_cost_limit_usd", scope="provider", provider="scripted", period="monthly") == 10
    assert sample(text, "cloudtuner_provider_call_duration_seconds_count", provider="scripted", method="run_job") == 2
    assert (
        sample(
            text, "cloudtuner_provider_call_duration_seconds_bucket", provider="scripted", method="run_job", le="+Inf"
        )
        == 2
    )
    assert sample(text, "cloudtuner_provider_call_duration_seconds_count", provider="scripted", method="get_job_status")
    assert sample(text, "cloudtuner_webhooks_total", provider="scripted", outcome="webhook_rejected") == 1
    assert "# TYPE cloudtuner_provider_call_duration_seconds histogram" in text
    assert "# TYPE cloudtuner_webhooks_total counter" in text


async def test_provider_errors_are_counted(running: RunningApp) -> None:
    running.provider.unavailable_next_calls = 1
    await run_jobs(running, ["complete"])
    text = (await running.client.get("/metrics")).text
    labels = {"provider": "scripted", "method": "run_job", "code": "provider_unavailable"}
    assert sample(text, "cloudtuner_provider_call_errors_total", **labels) == 1
