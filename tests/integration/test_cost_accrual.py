"""Cost accrual against the fake Replicate, on SQLite and PostgreSQL: wall time while running, the
final figure from ``metrics.predict_time``, prices per hardware and from the provider settings, and
a job's budget cap cancelling its run.

The server runs in process with its scheduler driven round by round; the fake Replicate runs in a
thread on 127.0.0.1. Runs are scripted to ``hang`` in ``processing`` until the test finishes them,
with a fixed ``predict_time`` of 600 s, so the final cost is exact.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cloudtuner.api.app import create_app
from cloudtuner.services.estimates import forget_history
from tests.fakes.replicate import FakeConfig, FakeReplicate
from tests.fakes.scripted_provider import ScriptedProvider
from tests.integration.conftest import RunningApp, make_settings
from tests.support.waiting import wait_until

PREDICT_TIME = 600.0
L40S, H100 = 0.000975, 0.001525

JOB: dict[str, Any] = {
    "config": {
        "--model_family": "flux",
        "--model_type": "lora",
        "--pretrained_model_name_or_path": "black-forest-labs/FLUX.1-dev",
        "--output_dir": "/outputs/flux-lora",
        "--max_train_steps": 1000,
    },
    # Not local: nothing to package or upload, the run is created at once.
    "dataloader_config": [
        {"id": "hub", "type": "huggingface", "dataset_type": "image", "dataset_name": "me/dogs", "resolution": 1024}
    ],
}


@pytest.fixture(scope="module")
def fake_server() -> Iterator[FakeReplicate]:
    config = FakeConfig(starting_seconds=0.05, processing_seconds=0.5, log_steps=5, total_steps=1000, tick_seconds=0.01)
    with FakeReplicate(config) as fake:
        yield fake


@pytest.fixture
def fake(fake_server: FakeReplicate) -> FakeReplicate:
    fake_server.reset()
    fake_server.set_default_script(outcome="hang", predict_time=PREDICT_TIME)
    return fake_server


@contextlib.asynccontextmanager
async def replicate_app(tmp_path: Path, database_url: str, fake: FakeReplicate) -> AsyncIterator[RunningApp]:
    settings = make_settings(tmp_path, database_url, scheduler_enabled=False, replicate_api_url=fake.base_url)
    provider = ScriptedProvider()
    app = create_app(settings, providers=[provider])
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://cloudtuner.test") as client:
            reply = await client.put("/api/cloud/providers/replicate/token", json={"token": fake.token})
            assert reply.status_code == 200, reply.text
            yield RunningApp(app=app, client=client, provider=provider)


@pytest.fixture
async def app(tmp_path: Path, database_url: str, fake: FakeReplicate) -> AsyncIterator[RunningApp]:
    async with replicate_app(tmp_path, database_url, fake) as running:
        yield running


async def submit(app: RunningApp, provider: str = "replicate", body: dict[str, Any] | None = None, **extra: Any) -> str:
    reply = await app.client.post(
        "/api/cloud/jobs/submit", params={"provider": provider}, json={**(body or JOB), **extra}
    )
    assert reply.status_code == 202, reply.text
    job_id: str = reply.json()["job_id"]
    return job_id


async def drive(
    app: RunningApp, job_id: str, accept: Callable[[dict[str, Any]], bool], timeout: float = 20.0
) -> dict[str, Any]:
    """Run scheduler rounds until the job satisfies ``accept``; return it."""

    async def probe() -> dict[str, Any]:
        await app.scheduler.run_dispatch_once()
        await app.scheduler.run_reconcile_once()
        await app.scheduler.drain()
        job: dict[str, Any] = (await app.client.get(f"/api/cloud/jobs/{job_id}")).json()["job"]
        return job

    return await wait_until(probe, accept, timeout=timeout, interval=0.05)


def run_of(fake: FakeReplicate, job: dict[str, Any]) -> str:
    run_id = job["provider_job_id"]
    assert run_id, job
    fake.wait_for_run(run_id, "processing")
    return str(run_id)


async def test_cost_accrues_by_wall_time_then_the_final_figure_replaces_it(
    app: RunningApp, fake: FakeReplicate
) -> None:
    job_id = await submit(app)
    running = await drive(app, job_id, lambda j: j["status"] == "running" and j["cost_usd"] > 0)
    assert running["hardware"] == "gpu-l40s" and running["price_per_second"] == L40S, running
    assert running["cost_final"] is False and running["run_seconds"] > 0, running
    assert running["cost_usd"] == pytest.approx(running["run_seconds"] * L40S, abs=1e-6)  # shown to 6 places
    assert running["cost_reserved_usd"] == running["estimate_high_usd"] > 0, running
    later = await drive(app, job_id, lambda j: j["run_seconds"] > running["run_seconds"])
    assert later["cost_usd"] > running["cost_usd"], "the cost grows while the run runs"

    fake.advance(run_of(fake, running), "succeeded")
    done = await drive(app, job_id, lambda j: j["status"] == "completed" and j["cost_final"])
    assert done["cost_usd"] == pytest.approx(PREDICT_TIME * L40S), done
    assert done["run_seconds"] == pytest.approx(PREDICT_TIME), done
    assert done["cost_reserved_usd"] == 0.0, "a finished job holds no reservation"


async def test_each_hardware_is_priced_at_its_own_rate(app: RunningApp, fake: FakeReplicate) -> None:
    job_id = await submit(app, hardware="gpu-h100")
    running = await drive(app, job_id, lambda j: j["status"] == "running")
    assert running["price_per_second"] == H100
    assert running["cost_estimate"]["basis"]["hardware"] == "gpu-h100"
    fake.advance(run_of(fake, running), "succeeded")
    done = await drive(app, job_id, lambda j: j["cost_final"])
    assert done["cost_usd"] == pytest.approx(PREDICT_TIME * H100), done


async def test_a_price_set_in_the_provider_settings_wins(app: RunningApp, fake: FakeReplicate) -> None:
    reply = await app.client.put(
        "/api/cloud/providers/replicate", json={"hardware_prices": {"gpu-l40s": {"price_per_hour": 7.2}}}
    )
    assert reply.status_code == 200, reply.text
    listed = {item["sku"]: item for item in reply.json()["hardware"]}
    assert listed["gpu-l40s"]["price_per_second"] == pytest.approx(0.002) and listed["gpu-l40s"]["source"] == "settings"
    assert listed["gpu-h100"]["source"] == "provider" and listed["gpu-h100"]["vram_gb"] == 80
    info = (await app.client.get("/api/cloud/providers/replicate/hardware")).json()
    assert info["default_hardware"] == "gpu-l40s" and len(info["hardware"]) == len(listed)
    assert {"gpu_type", "gpu_count", "vram_gb", "price_per_hour"} <= set(info["hardware"][0])

    job_id = await submit(app)
    running = await drive(app, job_id, lambda j: j["status"] == "running")
    fake.advance(run_of(fake, running), "succeeded")
    done = await drive(app, job_id, lambda j: j["cost_final"])
    # Replicate reports 600 s at its own price; the job pays the price set here for those seconds.
    assert done["cost_usd"] == pytest.approx(PREDICT_TIME * 0.002), done
    billing = (await app.client.get("/api/cloud/providers/replicate/billing")).json()
    assert billing["spent_this_month_usd"] == pytest.approx(PREDICT_TIME * 0.002, abs=1e-4), billing


async def test_the_budget_cap_cancels_a_running_job(app: RunningApp, fake: FakeReplicate) -> None:
    job_id = await submit(app, budget_usd=0.0001)  # about a tenth of a second of an L40S
    job = await drive(app, job_id, lambda j: j["status"] == "cancelled")
    cancel = job["events"][-1]
    assert cancel["cause"] == "budget cap reached" and "budget" in cancel["detail"], job["events"]
    assert "running" in [event["to_status"] for event in job["events"]], job["events"]
    assert "budget cap" in job["error"], job
    run = fake.wait_for_run(job["provider_job_id"], "canceled")
    assert run["status"] == "canceled"
    final = await drive(app, job_id, lambda j: j["cost_final"])
    assert final["cost_usd"] == pytest.approx(PREDICT_TIME * L40S), "the canceled run's predict_time"


async def test_a_provider_without_a_price_is_taken_at_its_word(app: RunningApp) -> None:
    """The scripted provider reports $0.001 a second and publishes no prices."""
    body = {**JOB, "config": {**JOB["config"], "--scripted_seconds": 0.3, "--max_train_steps": 3}}
    job_id = await submit(app, provider="scripted", body=body)
    done = await drive(app, job_id, lambda j: j["status"] == "completed" and j["cost_final"])
    assert done["price_per_second"] is None and done["cost_usd"] == pytest.approx(0.0003, abs=1e-6), done
    assert done["estimate_high_usd"] is None and done["cost_estimate"]["high_seconds"] > 0, done


async def test_estimates_learn_from_finished_runs_and_hold_the_next_one(app: RunningApp, fake: FakeReplicate) -> None:
    first = await app.client.post("/api/cloud/jobs/preview", params={"provider": "replicate"}, json=JOB)
    assert first.json()["estimate"]["basis"]["source"] == "defaults", first.text
    for predict_time in (600.0, 640.0, 620.0):
        fake.set_default_script(outcome="hang", predict_time=predict_time)
        job_id = await submit(app)
        running = await drive(app, job_id, lambda j: j["status"] == "running")
        fake.advance(run_of(fake, running), "succeeded")
        await drive(app, job_id, lambda j: j["cost_final"])
    forget_history(app.ctx)  # what a server learns shows within seconds; a test does not wait for it

    fake.set_default_script(outcome="hang", predict_time=630.0)
    reply = await app.client.post("/api/cloud/jobs/submit", params={"provider": "replicate"}, json=JOB)
    estimate = reply.json()["estimate"]
    basis = estimate["basis"]
    assert basis["source"] == "history" and basis["samples"] == 3 and basis["work_units"] == 1000, basis
    assert basis["seconds_per_unit_low"] == pytest.approx(0.54) and basis["seconds_per_unit_high"] == pytest.approx(
        0.704
    )
    assert estimate["expected_seconds"] == pytest.approx(620.0), estimate
    job_id = reply.json()["job_id"]
    running = await drive(app, job_id, lambda j: j["status"] == "running")
    fake.advance(run_of(fake, running), "succeeded")
    done = await drive(app, job_id, lambda j: j["cost_final"])
    assert estimate["low_usd"] <= done["cost_usd"] <= estimate["high_usd"], (estimate, done["cost_usd"])
    assert done["cost_usd"] == pytest.approx(630.0 * L40S)
