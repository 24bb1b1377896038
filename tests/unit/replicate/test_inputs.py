"""Trainer inputs: only known keys, deterministic config text, run names, publishing."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cloudtuner.providers.base import DeliveryTarget, HubDelivery, RunRequest, S3Delivery
from cloudtuner.providers.replicate.inputs import (
    TRAINER_INPUTS,
    WEBHOOK_EVENTS,
    build_body,
    build_input,
    config_text,
    effective_run_name,
)
from tests.fakes.replicate.catalog import trainer_input_schema

JOB = "01jq0c5w9r6f3v1m2n4p5q6r7s"
CONFIG: dict[str, Any] = {"--model_family": "flux", "--max_train_steps": 10, "--lora_rank": 16}
LOADER: list[dict[str, Any]] = [{"id": "imgs", "type": "local", "instance_data_dir": "/data/datasets/imgs"}]


def request(**fields: Any) -> RunRequest:
    values: dict[str, Any] = {"job_id": JOB, "config": dict(CONFIG), "dataloader_config": list(LOADER)}
    values.update(fields)
    return RunRequest(**values)


def test_trainer_inputs_match_the_trainer_schema() -> None:
    assert set(trainer_input_schema()["properties"]) == TRAINER_INPUTS
    assert WEBHOOK_EVENTS == ("start", "output", "logs", "completed")


def test_minimal_input_has_only_config_and_dataloader() -> None:
    run_input = build_input(request(), images_url=None)
    assert set(run_input) == {"config_json", "dataloader_json"}
    config = json.loads(run_input["config_json"])
    assert config == {**CONFIG, "--tracker_run_name": f"cloudtuner-{JOB}"}
    assert json.loads(run_input["dataloader_json"]) == LOADER


def test_config_text_is_deterministic_whatever_the_key_order() -> None:
    reordered = dict(reversed(list(CONFIG.items())))
    assert config_text(request()) == config_text(request(config=reordered))
    assert config_text(request()) == config_text(request())
    assert config_text(request()) != config_text(request(job_id="01jq0c5w9r6f3v1m2n4p5q6r7t"))


def test_run_name_precedence() -> None:
    assert effective_run_name(request()) == f"cloudtuner-{JOB}"
    assert effective_run_name(request(config={**CONFIG, "--tracker_run_name": "mine"})) == "mine"
    assert effective_run_name(request(config={**CONFIG, "tracker_run_name": "plain"})) == "plain"
    named = request(config={**CONFIG, "--tracker_run_name": "mine"}, tracker_run_name="api-test-run")
    assert effective_run_name(named) == "api-test-run"
    config = json.loads(config_text(request(config={**CONFIG, "tracker_run_name": "plain"})))
    assert "tracker_run_name" not in config and config["--tracker_run_name"] == "plain"


def test_archive_url_and_legacy_publishing() -> None:
    # Settings stored before publishing was checked and sealed (no "destination"): read as they are.
    publishing = {
        "hub_model_id": " user/my-lora ",
        "hf_token": "hf_abc",
        "push_to_hub": True,
        "s3_bucket": "bucket",
        "s3_secret_key": "sk",
        "something_else": 1,
    }
    run_input = build_input(request(publishing=publishing), images_url="https://api.test/v1/files/f1")
    assert run_input["images"] == "https://api.test/v1/files/f1"
    assert run_input["hub_model_id"] == "user/my-lora"
    assert run_input["hf_token"] == "hf_abc"
    assert run_input["s3_bucket"] == "bucket" and run_input["s3_secret_key"] == "sk"
    assert set(run_input) <= TRAINER_INPUTS


def test_sealed_publishing_sends_only_the_delivery() -> None:
    sealed = {"destination": "huggingface", "hub_model_id": "user/my-lora", "private": False, "sealed": {"x": "y"}}
    assert set(build_input(request(publishing=sealed), images_url=None)) == {"config_json", "dataloader_json"}
    hub = DeliveryTarget("huggingface", hub=HubDelivery("user/my-lora", token="hf_abc", private=False))
    run_input = build_input(request(publishing=sealed, delivery=hub), images_url=None)
    assert (run_input["hub_model_id"], run_input["hf_token"]) == ("user/my-lora", "hf_abc")
    assert json.loads(run_input["config_json"])["--model_card_private"] is False
    s3 = S3Delivery("models", "flux/" + JOB, "http://127.0.0.1:9000", "us-east-1", "AK", "SK")
    run_input = build_input(request(delivery=DeliveryTarget("s3", s3=s3)), images_url=None)
    assert {k: v for k, v in run_input.items() if k.startswith("s3_")} == {
        "s3_bucket": "models",
        "s3_base_path": "flux/" + JOB,
        "s3_endpoint_url": "http://127.0.0.1:9000",
        "s3_region": "us-east-1",
        "s3_access_key": "AK",
        "s3_secret_key": "SK",
    }
    assert "--model_card_private" not in json.loads(run_input["config_json"])
    assert set(run_input) <= TRAINER_INPUTS
    assert "SK" not in repr(s3) and "hf_abc" not in repr(hub)


@pytest.mark.parametrize(
    ("publishing", "default_token", "expected"),
    [
        ({"hub_model_id": "u/m"}, "hf_env", {"hub_model_id": "u/m", "hf_token": "hf_env"}),
        ({"hub_model_id": "u/m"}, None, {"hub_model_id": "u/m"}),
        ({"hub_model_id": "u/m", "push_to_hub": False, "hf_token": "t"}, "hf_env", {}),
        ({"hf_token": "t"}, "hf_env", {}),
        (None, "hf_env", {}),
    ],
)
def test_hub_inputs(publishing: dict[str, Any] | None, default_token: str | None, expected: dict[str, str]) -> None:
    run_input = build_input(request(publishing=publishing), images_url=None, default_hf_token=default_token)
    assert {k: v for k, v in run_input.items() if k in ("hub_model_id", "hf_token")} == expected


def test_body_with_and_without_webhook() -> None:
    body = build_body(request(), version_ref="simpletuner/advanced-trainer:" + "a" * 64, images_url=None)
    assert set(body) == {"version", "input"}
    hooked = build_body(
        request(webhook_url=f"https://ct.example/api/webhooks/replicate?job_id={JOB}"),
        version_ref="x/y:1",
        images_url=None,
    )
    assert hooked["webhook"].endswith(f"job_id={JOB}")
    assert hooked["webhook_events_filter"] == ["start", "output", "logs", "completed"]
