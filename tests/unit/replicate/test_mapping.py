"""Prediction objects to CloudJobInfo: status, cost, reference, times, output, metadata."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cloudtuner.core.ids import new_sortable_id
from cloudtuner.providers.base import CloudJobStatus
from cloudtuner.providers.replicate.hardware import HardwareCatalog, HardwareOverride
from cloudtuner.providers.replicate.mapping import parse_time, prediction_to_info, reference_of, webhook_job_id
from cloudtuner.providers.replicate.webhooks import prediction_to_info as webhook_mapping

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def prediction(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "hdwst0bb05rgp0cf0p29mzk2am",
        "model": "simpletuner/advanced-trainer",
        "version": "a" * 64,
        "input": {"config_json": json.dumps({"--tracker_run_name": "my-run"}), "dataloader_json": "[]"},
        "logs": "",
        "output": None,
        "error": None,
        "status": "starting",
        "created_at": "2026-03-01T11:59:00.123456789Z",
        "started_at": None,
        "completed_at": None,
        "metrics": {},
    }
    base.update(fields)
    return base


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("starting", CloudJobStatus.STARTING),
        ("processing", CloudJobStatus.RUNNING),
        ("succeeded", CloudJobStatus.COMPLETED),
        ("failed", CloudJobStatus.FAILED),
        ("canceled", CloudJobStatus.CANCELLED),
        ("aborted", CloudJobStatus.CANCELLED),
        ("something-new", CloudJobStatus.STARTING),
    ],
)
def test_status_mapping(status: str, expected: CloudJobStatus) -> None:
    assert prediction_to_info(prediction(status=status), now=NOW).status is expected


def test_cost_from_predict_time_at_the_profile_price() -> None:
    info = prediction_to_info(
        prediction(status="succeeded", metrics={"predict_time": 1000.0, "total_time": 1010.0}), now=NOW
    )
    assert info.cost_usd == pytest.approx(0.975)
    assert info.hardware == "gpu-l40s"
    h100 = prediction_to_info(
        prediction(status="succeeded", model="simpletuner/advanced-trainer-h100-x2", metrics={"predict_time": 100}),
        now=NOW,
    )
    assert h100.cost_usd == pytest.approx(0.305)
    assert h100.hardware == "gpu-h100-2x"


def test_cost_while_running_counts_from_started_at() -> None:
    started = NOW - timedelta(seconds=600)
    info = prediction_to_info(prediction(status="processing", started_at=started.isoformat()), now=NOW)
    assert info.cost_usd == pytest.approx(600 * 0.000975)
    assert prediction_to_info(prediction(status="starting"), now=NOW).cost_usd == 0.0


def test_cost_uses_overridden_price_and_is_unknown_for_other_models() -> None:
    catalog = HardwareCatalog(overrides={"gpu-l40s": HardwareOverride(price_per_second=0.002)})
    info = prediction_to_info(prediction(status="succeeded", metrics={"predict_time": 10}), catalog=catalog)
    assert info.cost_usd == pytest.approx(0.02)
    other = prediction_to_info(prediction(model="someone/else", status="succeeded", metrics={"predict_time": 10}))
    assert other.cost_usd is None and other.hardware is None


def test_error_output_times_and_progress() -> None:
    info = prediction_to_info(
        prediction(
            status="failed",
            error="CUDA out of memory",
            output="https://huggingface.co/u/m",
            logs="Training step 3/9 loss=0.25 lr=0.0001\n",
            started_at="2026-03-01T11:59:30Z",
            completed_at="2026-03-01T12:00:00.5+00:00",
        ),
        now=NOW,
    )
    assert info.error == "CUDA out of memory"
    assert info.output == {"output": "https://huggingface.co/u/m"}
    assert info.progress is not None and (info.progress.step, info.progress.total_steps) == (3, 9)
    assert info.created_at == datetime(2026, 3, 1, 11, 59, 0, 123456, tzinfo=UTC)
    assert info.started_at == datetime(2026, 3, 1, 11, 59, 30, tzinfo=UTC)
    assert info.finished_at == datetime(2026, 3, 1, 12, 0, 0, 500000, tzinfo=UTC)
    assert prediction_to_info(prediction(output=None, logs=None)).output is None


def test_metadata_has_config_and_no_secrets() -> None:
    payload = prediction(
        input={
            "config_json": json.dumps({"--model_family": "flux", "--tracker_run_name": "r"}),
            "dataloader_json": json.dumps([{"id": "a"}]),
            "hf_token": "hf_secret",
        }
    )
    info = prediction_to_info(payload)
    assert info.metadata["config"] == {"--model_family": "flux", "--tracker_run_name": "r"}
    assert info.metadata["dataloader_config"] == [{"id": "a"}]
    assert info.metadata["tracker_run_name"] == "r"
    assert "hf_secret" not in json.dumps(info.metadata)


def test_reference_from_run_name_or_webhook() -> None:
    job_id = new_sortable_id()
    named = prediction(input={"config_json": json.dumps({"--tracker_run_name": f"cloudtuner-{job_id}"})})
    assert reference_of(named) == job_id
    assert reference_of(prediction(input={"config_json": '{"--tracker_run_name": "cloudtuner-test"}'})) is None
    hooked = prediction(webhook=f"https://ct.example/api/webhooks/replicate?job_id={job_id}")
    assert reference_of(hooked) == job_id
    assert reference_of(prediction(input={"config_json": "not json"})) is None
    assert prediction_to_info(prediction(), reference="given").reference == "given"
    assert webhook_job_id("https://x/y?a=1&job_id=J") == "J"
    assert webhook_job_id("https://x/y") is None


def test_webhook_mapping_is_the_same_function() -> None:
    assert webhook_mapping is prediction_to_info


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2023-08-16T19:33:26.678378653Z", datetime(2023, 8, 16, 19, 33, 26, 678378, tzinfo=UTC)),
        ("2024-08-22T12:26:51.079Z", datetime(2024, 8, 22, 12, 26, 51, 79000, tzinfo=UTC)),
        ("2024-08-22T14:26:51+02:00", datetime(2024, 8, 22, 12, 26, 51, tzinfo=UTC)),
        ("2024-08-22T12:26:51", datetime(2024, 8, 22, 12, 26, 51, tzinfo=UTC)),
        ("garbage", None),
        (None, None),
    ],
)
def test_parse_time(text: str | None, expected: datetime | None) -> None:
    assert parse_time(text) == expected


def test_payload_without_id_is_refused() -> None:
    with pytest.raises(ValueError, match="id"):
        prediction_to_info({"status": "starting"})
