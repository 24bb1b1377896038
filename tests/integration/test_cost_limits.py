"""Spending limits at submission, on SQLite and PostgreSQL: warn versus block, the 402 reply, the
status route, reservations released when jobs end, calendar periods, and the race of 50 concurrent
submissions against a block limit (in one server, with idempotency keys, and across two servers).

The scripted provider is given a price in its settings (``scripted-gpu`` at $3.60 an hour, i.e.
$0.001 a second). The inline job is a 4-step Flux LoRA at 1024 px, so with no history its
estimate is 4 x 1.8-3.6 s = 7.2-14.4 s, up to $0.0144: a limit of $0.10 has room for exactly six.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from cloudtuner.api.app import create_app
from tests.fakes.scripted_provider import ScriptedProvider
from tests.integration.conftest import RunningApp, inline_job, make_settings

HIGH_ESTIMATE = 0.0144
PRICE_TABLE = {"scripted-gpu": {"price_per_hour": 3.6, "gpu_type": "L40S", "gpu_count": 1, "vram_gb": 48}}


class MovableClock:
    """A clock a test sets and moves."""

    def __init__(self, now: datetime) -> None:
        self.current = now

    def now(self) -> datetime:
        return self.current


async def price_scripted(client: httpx.AsyncClient, **settings: Any) -> None:
    body = {"hardware_prices": PRICE_TABLE, "default_hardware": "scripted-gpu", **settings}
    reply = await client.put("/api/cloud/providers/scripted", json=body)
    assert reply.status_code == 200, reply.text


def limit(amount: float, action: str = "block", period: str = "daily") -> dict[str, Any]:
    return {"cost_limit": {"enabled": True, "amount": amount, "period": period, "action": action}}


async def submit(client: httpx.AsyncClient, **extra: Any) -> httpx.Response:
    return await client.post("/api/cloud/jobs/submit", params={"provider": "scripted"}, json={**inline_job(), **extra})


@contextlib.asynccontextmanager
async def app_with_clock(tmp_path: Path, database_url: str, clock: MovableClock) -> AsyncIterator[RunningApp]:
    settings = make_settings(tmp_path, database_url, scheduler_enabled=False)
    provider = ScriptedProvider()
    app = create_app(settings, providers=[provider], clock=clock)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://cloudtuner.test") as client:
            yield RunningApp(app=app, client=client, provider=provider)


async def test_the_estimate_is_in_the_submit_reply_and_the_job(manual: RunningApp) -> None:
    await price_scripted(manual.client)
    reply = await submit(manual.client, budget_usd=5)
    assert reply.status_code == 202, reply.text
    body = reply.json()
    estimate = body["estimate"]
    assert estimate["low_usd"] == pytest.approx(0.0072) and estimate["high_usd"] == pytest.approx(HIGH_ESTIMATE)
    assert estimate["basis"]["source"] == "defaults" and estimate["basis"]["steps"] == 4, estimate
    assert body["warnings"] == []
    job = body["job"]
    assert job["hardware"] == "scripted-gpu" and job["price_per_second"] == pytest.approx(0.001), job
    assert job["cost_reserved_usd"] == pytest.approx(HIGH_ESTIMATE) and job["budget_usd"] == 5.0, job
    assert job["estimate_high_usd"] == pytest.approx(HIGH_ESTIMATE)
    listed = (await manual.client.get("/api/cloud/jobs")).json()["jobs"][0]
    assert listed["estimate_low_usd"] == pytest.approx(0.0072) and listed["cost_final"] is False, listed
    preview = await manual.client.post("/api/cloud/jobs/preview", params={"provider": "scripted"}, json=inline_job())
    assert preview.json()["estimate"]["high_usd"] == pytest.approx(HIGH_ESTIMATE), preview.text


async def test_a_budget_below_the_estimate_is_warned_about(manual: RunningApp) -> None:
    await price_scripted(manual.client)
    reply = await submit(manual.client, budget_usd=0.01)
    assert reply.status_code == 202, reply.text
    (warning,) = reply.json()["warnings"]
    assert "budget cap of $0.01" in warning, warning


async def test_block_refuses_with_402_saying_what_was_spent_of_what_and_when_it_resets(manual: RunningApp) -> None:
    await price_scripted(manual.client, **limit(0.03))
    for _ in range(2):
        assert (await submit(manual.client)).status_code == 202
    refused = await submit(manual.client)
    assert refused.status_code == 402, refused.text
    body = refused.json()
    assert body["code"] == "spending_limit_exceeded"
    assert body["limit_usd"] == 0.03 and body["period"] == "daily" and body["scope"] == "provider"
    assert body["reserved_usd"] == pytest.approx(2 * HIGH_ESTIMATE) and body["spent_usd"] == 0.0, body
    assert body["estimate_usd"] == pytest.approx(HIGH_ESTIMATE)
    resets = datetime.fromisoformat(body["resets_at"])
    assert resets > datetime.now(UTC) and resets - datetime.now(UTC) <= timedelta(days=1), body
    # Amounts below a cent's precision are not rounded away ("$0.03 of $0.03" would say nothing).
    assert "$0.0288 of $0.03" in body["detail"] and "daily spending limit on scripted jobs" in body["detail"], body
    assert "resets at" in body["detail"], body
    jobs = (await manual.client.get("/api/cloud/jobs")).json()["jobs"]
    assert len(jobs) == 2, "a refused submission creates nothing"


async def test_warn_accepts_with_a_warning(manual: RunningApp) -> None:
    await price_scripted(manual.client)
    reply = await manual.client.put("/api/cloud/settings", json=limit(0.02, action="warn"))
    assert reply.status_code == 200 and reply.json()["cost_limit"]["action"] == "warn", reply.text
    first = (await submit(manual.client)).json()
    assert first["warnings"] == [], "72 % used: below the 80 % that is worth a warning"
    second = await submit(manual.client)
    assert second.status_code == 202, second.text
    (warning,) = second.json()["warnings"]
    assert "over its amount" in warning and "over all providers" in warning and "action is warn" in warning


async def test_the_status_route_reports_spent_reserved_and_percentage(manual: RunningApp) -> None:
    await price_scripted(manual.client, **limit(0.1, period="monthly"))
    await manual.client.put("/api/cloud/settings", json={**limit(1.0, action="warn"), "time_zone": "Europe/Berlin"})
    for _ in range(3):
        assert (await submit(manual.client)).status_code == 202
    report = (await manual.client.get("/api/cloud/metrics/cost-limit")).json()
    assert report["time_zone"] == "Europe/Berlin"
    by_scope = {status["scope"]: status for status in report["limits"]}
    provider = by_scope["provider"]
    assert provider["provider"] == "scripted" and provider["period"] == "monthly" and provider["action"] == "block"
    assert provider["reserved_usd"] == pytest.approx(3 * HIGH_ESTIMATE) and provider["spent_usd"] == 0.0
    assert provider["percent_used"] == pytest.approx(100 * 3 * HIGH_ESTIMATE / 0.1, abs=0.01)
    start = datetime.fromisoformat(provider["period_start"]).astimezone(ZoneInfo("Europe/Berlin"))
    assert (start.day, start.hour, start.minute) == (1, 0, 0), start
    assert datetime.fromisoformat(provider["resets_at"]) > start
    assert by_scope["global"]["amount"] == 1.0 and report["limit"]["scope"] == "provider", report


async def test_a_finished_job_releases_its_reservation(running: RunningApp) -> None:
    await price_scripted(running.client, **limit(0.02))
    job_id = (await submit(running.client)).json()["job_id"]
    assert (await submit(running.client)).status_code == 402
    cancelled = await running.client.post(f"/api/cloud/jobs/{job_id}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    job = (await running.client.get(f"/api/cloud/jobs/{job_id}")).json()["job"]
    assert job["status"] == "cancelled" and job["cost_reserved_usd"] == 0.0, job
    assert (await submit(running.client)).status_code == 202, "the released estimate made room"


async def test_clearing_a_limit(manual: RunningApp) -> None:
    await price_scripted(manual.client, **limit(0.01))
    assert (await submit(manual.client)).status_code == 402
    reply = await manual.client.put("/api/cloud/providers/scripted", json={"cost_limit": None})
    assert reply.json()["settings"]["cost_limit"] is None
    assert (await submit(manual.client)).status_code == 202
    assert (await manual.client.get("/api/cloud/metrics/cost-limit")).json()["limits"] == []


async def test_invalid_limits_and_time_zones_are_refused(manual: RunningApp) -> None:
    bad = await manual.client.put("/api/cloud/settings", json={"cost_limit": {"amount": -1}})
    assert bad.status_code == 422, bad.text
    bad = await manual.client.put("/api/cloud/settings", json={"time_zone": "Mars/Olympus"})
    assert bad.status_code == 422 and "IANA" in bad.text, bad.text
    bad = await manual.client.put("/api/cloud/providers/scripted", json={"hardware_prices": {"new-gpu": {}}})
    assert bad.status_code == 400 and "needs price_per_second" in bad.json()["detail"], bad.text
    words = await manual.client.put("/api/cloud/settings", json={"cost_limit": {"amount": 5, "period": "week"}})
    assert words.json()["cost_limit"]["period"] == "weekly"


# --- calendar periods ---------------------------------------------------------------------------


async def test_the_daily_period_ends_at_midnight_in_the_configured_time_zone(tmp_path: Path, database_url: str) -> None:
    # 22:30 UTC on 31 January is already 1 February in Berlin: a new day, and a new month.
    clock = MovableClock(datetime(2027, 1, 31, 22, 30, tzinfo=UTC))
    async with app_with_clock(tmp_path, database_url, clock) as app:
        await price_scripted(app.client, **limit(0.02))
        await app.client.put("/api/cloud/settings", json={"time_zone": "Europe/Berlin"})
        assert (await submit(app.client)).status_code == 202
        refused = (await submit(app.client)).json()
        assert refused["resets_at"] == "2027-01-31T23:00:00+00:00", refused  # midnight in Berlin (UTC+1)
        clock.current = datetime(2027, 1, 31, 23, 0, tzinfo=UTC)  # Berlin's 1 February begins
        assert (await submit(app.client)).status_code == 202
        # The same moment counted in UTC is still 31 January, where two estimates are held.
        await app.client.put("/api/cloud/settings", json={"time_zone": "UTC"})
        refused = (await submit(app.client)).json()
        assert refused["code"] == "spending_limit_exceeded" and refused["resets_at"] == "2027-02-01T00:00:00+00:00"
        assert refused["reserved_usd"] == pytest.approx(2 * HIGH_ESTIMATE), refused


async def test_the_monthly_period_turns_at_the_month_end_across_a_dst_change(tmp_path: Path, database_url: str) -> None:
    # New York: clocks go forward on 14 March 2027; March ends at 04:00 UTC on 1 April (UTC-4).
    clock = MovableClock(datetime(2027, 3, 1, 5, 0, tzinfo=UTC))
    async with app_with_clock(tmp_path, database_url, clock) as app:
        await app.client.put("/api/cloud/settings", json={"time_zone": "America/New_York"})
        await price_scripted(app.client, **limit(0.02, period="monthly"))
        assert (await submit(app.client)).status_code == 202
        clock.current = datetime(2027, 4, 1, 3, 59, tzinfo=UTC)  # 23:59 on 31 March in New York
        refused = (await submit(app.client)).json()
        assert refused["period_start"] == "2027-03-01T05:00:00+00:00", refused  # midnight EST
        assert refused["resets_at"] == "2027-04-01T04:00:00+00:00", refused  # midnight EDT
        clock.current = datetime(2027, 4, 1, 4, 0, tzinfo=UTC)
        assert (await submit(app.client)).status_code == 202


# --- the race -----------------------------------------------------------------------------------


async def test_fifty_concurrent_submissions_cannot_exceed_a_block_limit(manual: RunningApp) -> None:
    await price_scripted(manual.client, **limit(0.1))
    replies = await asyncio.gather(*(submit(manual.client) for _ in range(50)))
    accepted = [r for r in replies if r.status_code == 202]
    refused = [r for r in replies if r.status_code == 402]
    assert len(accepted) == 6 and len(refused) == 44, [r.status_code for r in replies]
    assert all(r.json()["code"] == "spending_limit_exceeded" for r in refused)
    status = (await manual.client.get("/api/cloud/metrics/cost-limit")).json()["limit"]
    assert status["committed_usd"] == pytest.approx(6 * HIGH_ESTIMATE) and status["committed_usd"] <= 0.1, status
    jobs = (await manual.client.get("/api/cloud/jobs", params={"limit": 100})).json()["jobs"]
    assert len(jobs) == 6


async def test_fifty_concurrent_keyed_submissions_cannot_exceed_a_block_limit(manual: RunningApp) -> None:
    await price_scripted(manual.client, **limit(0.1))
    replies = await asyncio.gather(*(submit(manual.client, idempotency_key=f"key-{n}") for n in range(50)))
    assert sorted(r.status_code for r in replies) == [202] * 6 + [402] * 44


async def test_two_servers_on_one_database_cannot_together_exceed_a_block_limit(
    tmp_path: Path, database_url: str
) -> None:
    settings = make_settings(tmp_path, database_url, scheduler_enabled=False)
    apps = [create_app(settings, providers=[ScriptedProvider()]) for _ in range(2)]
    async with contextlib.AsyncExitStack() as stack:
        clients = []
        for app in apps:
            await stack.enter_async_context(app.router.lifespan_context(app))
            client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cloudtuner.test")
            clients.append(await stack.enter_async_context(client))
        for client in clients:  # each server's own write clears its settings cache
            await price_scripted(client, **limit(0.1))
        replies = await asyncio.gather(
            *(submit(clients[n % 2], **({"idempotency_key": f"k{n}"} if n % 3 == 0 else {})) for n in range(50))
        )
        assert sorted(r.status_code for r in replies) == [202] * 6 + [402] * 44
