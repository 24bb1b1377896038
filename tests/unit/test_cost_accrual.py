"""Accrual, finalisation and budget caps on a job row, and estimates, without a database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cloudtuner.core.states import JobStatus
from cloudtuner.db.tables import JobRow
from cloudtuner.providers.base import CloudJobInfo, CloudJobStatus
from cloudtuner.providers.replicate import ReplicateProvider
from cloudtuner.schemas.costs import HardwarePrice
from cloudtuner.schemas.settings import ProviderSettings
from cloudtuner.services import costs
from cloudtuner.services.costs_prices import build_price_table, provider_price
from cloudtuner.services.estimates import History, estimate_from, hardware_speed, training_shape
from cloudtuner.settings import Settings
from tests.fakes.scripted_provider import ScriptedProvider

NOW = datetime(2027, 5, 1, 12, 0, tzinfo=UTC)
L40S = 0.000975


def job(**fields: Any) -> JobRow:
    values: dict[str, Any] = {
        "id": "job",
        "status": JobStatus.RUNNING.value,
        "cost_usd": 0.0,
        "cost_final": False,
        "cost_reserved_usd": 3.5,
        "price_per_second": L40S,
        "run_seconds": None,
        "budget_usd": None,
        "started_at": NOW - timedelta(seconds=100),
        "finished_at": None,
        "cancel_requested_at": None,
        "next_sync_at": None,
    }
    values.update(fields)
    return JobRow(**values)


def report(status: CloudJobStatus, cost: float | None, **fields: Any) -> CloudJobInfo:
    return CloudJobInfo(provider_job_id="run", status=status, cost_usd=cost, hardware="gpu-l40s", **fields)


def test_a_provider_figure_is_read_back_into_seconds_and_priced_at_the_jobs_rate() -> None:
    row = job(price_per_second=0.002)
    costs.accrue(row, report(CloudJobStatus.RUNNING, 50 * L40S), NOW, provider_price=L40S)
    assert row.run_seconds == pytest.approx(50) and row.cost_usd == pytest.approx(0.1)
    assert row.cost_final is False


def test_a_final_report_makes_the_cost_final_and_older_reports_do_not_undo_it() -> None:
    row = job()
    costs.accrue(row, report(CloudJobStatus.COMPLETED, 600 * L40S), NOW, provider_price=L40S)
    assert (row.cost_final, row.run_seconds) == (True, pytest.approx(600))
    costs.accrue(row, report(CloudJobStatus.RUNNING, 900 * L40S), NOW, provider_price=L40S)
    assert row.cost_usd == pytest.approx(600 * L40S), "a late running report changes nothing"


def test_without_a_figure_the_wall_time_is_charged() -> None:
    row = job()
    costs.accrue(row, report(CloudJobStatus.RUNNING, None), NOW, provider_price=None)
    assert row.run_seconds == pytest.approx(100) and row.cost_usd == pytest.approx(100 * L40S)
    assert row.cost_final is False
    started = NOW - timedelta(seconds=30)
    ended = NOW - timedelta(seconds=10)
    costs.accrue(row, report(CloudJobStatus.COMPLETED, None, started_at=started, finished_at=ended), NOW, None)
    assert row.run_seconds == pytest.approx(20), "the provider's own start and end times win"
    assert row.cost_final is False, "a wall-time cost is never final"


def test_a_provider_whose_prices_are_unknown_is_taken_at_its_word() -> None:
    row = job(price_per_second=None)
    costs.accrue(row, report(CloudJobStatus.COMPLETED, 0.42), NOW, provider_price=None)
    assert row.cost_usd == 0.42 and row.cost_final is True


def test_the_budget_cap_asks_for_a_cancel_once() -> None:
    row = job(budget_usd=0.05, cost_usd=0.049)
    assert costs.enforce_budget(row, NOW) is False
    row.cost_usd = 0.05
    assert costs.enforce_budget(row, NOW) is True
    assert row.cancel_requested_at == NOW and row.next_sync_at == NOW
    assert costs.enforce_budget(row, NOW + timedelta(seconds=1)) is False, "already being cancelled"
    assert "$0.05 budget" in costs.budget_message(row)
    assert costs.enforce_budget(job(budget_usd=0.01, cost_usd=1.0, status="completed"), NOW) is False


def test_when_a_running_job_reaches_its_budget_cap() -> None:
    row = job(budget_usd=0.05, cost_usd=0.02, price_per_second=0.001, status="running")
    assert costs.budget_reached_at(row, NOW) == NOW + timedelta(seconds=30)
    row.cost_usd = 0.06
    assert costs.budget_reached_at(row, NOW) == NOW, "already over: now"
    assert costs.budget_reached_at(job(budget_usd=None, price_per_second=0.001, status="running"), NOW) is None
    assert costs.budget_reached_at(job(budget_usd=1.0, price_per_second=None, status="running"), NOW) is None
    assert costs.budget_reached_at(job(budget_usd=1.0, price_per_second=0.001, status="queued"), NOW) is None


def test_a_budget_below_a_cent_is_not_rounded_in_the_message() -> None:
    row = job(budget_usd=0.005, cost_usd=0.0081)
    assert costs.budget_message(row) == (
        "Cancelled by its budget cap: the job had cost $0.0081 of its $0.005 budget (budget_usd)."
    )


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (0.0, "$0.00"),
        (0.02, "$0.02"),
        (1.6, "$1.60"),
        (0.005, "$0.005"),
        (0.0222, "$0.0222"),
        (2.6713, "$2.6713"),
        (1234.5678, "$1,234.57"),
        (0.00001, "$0.00"),
    ],
)
def test_dollar_amounts_in_sentences(value: float, shown: str) -> None:
    assert costs.format_usd(value) == shown


def test_what_a_job_counts_for_against_limits() -> None:
    assert costs.committed(job(cost_usd=1.0, cost_reserved_usd=3.5)) == 3.5
    assert costs.committed(job(cost_usd=4.0, cost_reserved_usd=3.5)) == 4.0, "past its estimate: its cost"
    assert costs.committed(job(cost_usd=1.0, cost_reserved_usd=3.5, status="failed")) == 1.0


# --- prices -------------------------------------------------------------------------------------


async def no_token() -> str | None:
    return None


def test_replicates_published_prices_with_overrides_from_settings(tmp_path: Path) -> None:
    provider = ReplicateProvider(Settings(data_dir=tmp_path), no_token)
    settings = ProviderSettings.model_validate(
        {
            "default_hardware": "gpu-h100",
            "hardware_prices": {
                "gpu-2x-l40s": {"price_per_hour": 7.2},
                "my-a6000": {"price_per_second": 0.0005, "gpu_type": "A6000", "gpu_count": 2, "vram_gb": 48},
                "no-price": {"gpu_type": "X"},
            },
        }
    )
    table = build_price_table(provider, settings)
    assert table.default_sku == "gpu-h100" and table.find(None) is table.profiles["gpu-h100"]
    assert table.profiles["gpu-h100"].default and not table.profiles["gpu-l40s"].default
    l40s = table.profiles["gpu-l40s"]
    assert (l40s.gpu_type, l40s.gpu_count, l40s.vram_gb, l40s.price_per_second) == ("L40S", 1, 48, L40S)
    assert l40s.price_per_hour == pytest.approx(3.51) and l40s.source == "provider"
    two = table.profiles["gpu-2x-l40s"]
    assert two.price_per_second == pytest.approx(0.002) and two.source == "settings" and two.total_vram_gb == 96
    mine = table.profiles["my-a6000"]
    assert (mine.gpu_count, mine.total_vram_gb, mine.source) == (2, 96, "settings")
    assert "no-price" not in table.profiles
    assert table.price("GPU-A100-LARGE") == 0.0014
    assert provider_price(provider, "gpu-2x-l40s") == 0.00195, "the provider's own price, for its reports"
    assert provider_price(ScriptedProvider(), "scripted-gpu") is None


# --- estimates ----------------------------------------------------------------------------------


def profile(gpu_type: str, count: int = 1, price: float = L40S) -> HardwarePrice:
    return HardwarePrice(
        sku="x", name="x", gpu_type=gpu_type, gpu_count=count, price_per_second=price, price_per_hour=price * 3600,
        source="provider",
    )  # fmt: skip


def test_the_shape_of_a_job() -> None:
    shape = training_shape(
        {"--model_family": "SDXL", "--max_train_steps": "2000", "--train_batch_size": 2},
        [{"id": "a", "resolution": 512}, {"id": "b", "resolution": 1024}],
    )
    assert (shape.kind, shape.steps, shape.work_units) == ("sdxl/lora", 2000, 4000.0)
    by_epochs = training_shape({"num_train_epochs": 10, "resolution": 0.25}, [], image_count=30)
    assert (by_epochs.steps, by_epochs.steps_assumed, by_epochs.kind) == (300, False, "unknown/lora")
    assert by_epochs.work_units == pytest.approx(300 * 250_000 / 1024**2)
    assumed = training_shape({"--model_type": "full"}, [])
    assert (assumed.steps, assumed.steps_assumed, assumed.model_type) == (1000, True, "full")


def test_defaults_follow_the_seeds_cost_table() -> None:
    shape = training_shape({"--model_family": "flux", "--max_train_steps": 1000}, [{"id": "a", "resolution": 1024}])
    estimate = estimate_from(shape, "gpu-l40s", profile("L40S"), History(()))
    assert (estimate.low_seconds, estimate.high_seconds) == (1800, 3600)  # 30-60 minutes
    assert estimate.low_usd == pytest.approx(1.755) and estimate.high_usd == pytest.approx(3.51)  # the seeds' $2-4
    assert estimate.basis.source == "defaults" and estimate.basis.note is None
    sdxl = training_shape({"--model_family": "sdxl", "--max_train_steps": 2000}, [])
    assert estimate_from(sdxl, None, profile("L40S"), History(())).high_seconds == 5400  # 90 minutes
    full = training_shape({"--model_family": "flux", "--model_type": "full", "--max_train_steps": 5000}, [])
    assert estimate_from(full, None, profile("L40S"), History(())).high_seconds == pytest.approx(12 * 3600)


def test_faster_hardware_shortens_the_default_estimate() -> None:
    assert hardware_speed(profile("H100")) == 2.0 and hardware_speed(profile("L40S", 2)) == pytest.approx(1.9)
    shape = training_shape({"--model_family": "flux", "--max_train_steps": 1000}, [])
    h100 = estimate_from(shape, "gpu-h100", profile("H100", price=0.001525), History(()))
    assert h100.high_seconds == 1800 and "2.00x" in (h100.basis.note or "")
    unknown = estimate_from(shape, "x", profile("Z80"), History(()))
    assert unknown.high_seconds == 3600 and "no speed figure for Z80" in (unknown.basis.note or "")


def test_history_gives_the_range_and_the_median() -> None:
    shape = training_shape({"--model_family": "pixart", "--max_train_steps": 100}, [])
    estimate = estimate_from(shape, "gpu-l40s", profile("L40S"), History((2.0, 2.5, 2.2)))
    assert estimate.basis.source == "history" and estimate.basis.samples == 3
    assert (estimate.low_seconds, estimate.expected_seconds, estimate.high_seconds) == (180, 220, 275)
    few = estimate_from(shape, "gpu-l40s", profile("L40S"), History((2.0,)))
    assert (few.low_seconds, few.high_seconds) == (150, 250)
    unpriced = estimate_from(shape, None, None, History(()))
    assert unpriced.high_usd is None and "no price" in (unpriced.basis.note or "")
    assert "no figures for pixart" in (unpriced.basis.note or "")


class _Providers:
    def __init__(self, provider: Any) -> None:
        self.provider = provider

    def find(self, name: str) -> Any:
        return self.provider


class _Clock:
    def now(self) -> datetime:
        return NOW


def _scheduling_context(provider: Any) -> Any:
    from types import SimpleNamespace

    return SimpleNamespace(
        clock=_Clock(), settings=Settings(reconcile_interval_seconds=30), providers=_Providers(provider)
    )


def test_a_job_is_read_when_its_budget_cap_is_reached_not_a_whole_interval_later() -> None:
    from cloudtuner.services.dispatch import _schedule_next_sync

    ctx = _scheduling_context(ScriptedProvider())
    capped = job(provider="scripted", budget_usd=0.01, cost_usd=0.01 - 5 * L40S)  # five seconds of budget left
    _schedule_next_sync(ctx, capped)
    assert capped.next_sync_at is not None
    assert abs((capped.next_sync_at - NOW).total_seconds() - 5) < 0.01
    uncapped = job(provider="scripted")
    _schedule_next_sync(ctx, uncapped)
    assert uncapped.next_sync_at == NOW + timedelta(seconds=30)


def test_jobs_whose_provider_pushes_state_are_not_polled_unless_a_cancel_is_pending() -> None:
    from cloudtuner.providers.worker import WorkerProvider
    from cloudtuner.services.dispatch import _schedule_next_sync

    ctx = _scheduling_context(WorkerProvider())
    waiting = job(provider="worker", status=JobStatus.STARTING.value)
    _schedule_next_sync(ctx, waiting)
    assert waiting.next_sync_at is None
    cancelling = job(provider="worker", cancel_requested_at=NOW)
    _schedule_next_sync(ctx, cancelling)
    assert cancelling.next_sync_at == NOW
