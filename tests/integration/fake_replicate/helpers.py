"""Request builders shared by the fake Replicate tests."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.fakes.replicate import TRAINER_VERSION

TRAINER = "simpletuner/advanced-trainer"
DESTINATION = "cloudtuner-test/trained-lora"
TRAINING_PATH = f"models/{TRAINER}/versions/{TRAINER_VERSION}/trainings"
PROBLEM = "application/problem+json"


def trainer_input(**overrides: Any) -> dict[str, Any]:
    """Input as SimpleTuner's client sends it (config and dataloader as JSON text)."""
    config = {"--model_family": "flux", "--max_train_steps": 40, "--learning_rate": "1e-4"}
    loader = [{"id": "my-dataset", "type": "local", "dataset_type": "image"}]
    return {"config_json": json.dumps(config), "dataloader_json": json.dumps(loader), **overrides}


def create_training(api: httpx.Client, **body: Any) -> httpx.Response:
    """POST a training of the seeded trainer into the seeded destination."""
    payload = {"destination": DESTINATION, "input": trainer_input(), **body}
    return api.post(TRAINING_PATH, json=payload)


def create_prediction(api: httpx.Client, headers: dict[str, str] | None = None, **body: Any) -> httpx.Response:
    """POST a prediction of the seeded trainer in SimpleTuner's ``owner/name:version`` form."""
    payload = {"version": f"{TRAINER}:{TRAINER_VERSION}", "input": trainer_input(), **body}
    return api.post("predictions", json=payload, headers=headers or {})
