"""Models and versions: the seeded trainer, newest-first versions, cursor pages, model creation."""

from __future__ import annotations

import httpx

from tests.fakes.replicate import TRAINER_OLD_VERSION, TRAINER_VERSION, FakeReplicate

from .helpers import PROBLEM, TRAINER

NOT_FOUND = {"detail": "The requested resource could not be found.", "status": 404}
SECTION_11_INPUTS = {
    "images",
    "config_json",
    "dataloader_json",
    "max_train_steps",
    "s3_bucket",
    "s3_region",
    "s3_endpoint_url",
    "s3_base_path",
    "s3_public_base_url",
    "s3_access_key",
    "s3_secret_key",
    "hub_model_id",
    "hf_token",
    "lycoris_config",
    "return_logs",
}


def test_seeded_trainer_model_and_latest_version(api: httpx.Client) -> None:
    model = api.get(f"models/{TRAINER}").json()
    for key in ("url", "owner", "name", "visibility", "run_count"):
        assert model[key] is not None
    assert (model["owner"], model["name"], model["visibility"]) == ("simpletuner", "advanced-trainer", "public")
    latest = model["latest_version"]
    assert latest["id"] == TRAINER_VERSION
    assert len(latest["id"]) == 64
    assert latest["cog_version"]
    schema = latest["openapi_schema"]["components"]["schemas"]
    assert "TrainingInput" not in schema
    assert schema["Output"] == {"type": "string", "title": "Output"}
    inputs = schema["Input"]
    assert set(inputs["properties"]) == SECTION_11_INPUTS
    assert inputs["properties"]["images"]["format"] == "uri"
    for secret in ("hf_token", "s3_access_key", "s3_secret_key"):
        assert inputs["properties"][secret]["x-cog-secret"] is True
        assert inputs["properties"][secret]["format"] == "password"
    assert inputs["properties"]["return_logs"]["default"] is True
    assert inputs["properties"]["max_train_steps"]["type"] == "integer"
    orders = [p["x-order"] for p in inputs["properties"].values()]
    assert sorted(orders) == list(range(len(orders)))


def test_versions_are_newest_first_and_paginated(api: httpx.Client, fake: FakeReplicate) -> None:
    listed = api.get(f"models/{TRAINER}/versions").json()
    assert [v["id"] for v in listed["results"]] == [TRAINER_VERSION, TRAINER_OLD_VERSION]
    assert listed["results"][0]["created_at"] > listed["results"][1]["created_at"]
    assert listed["next"] is None
    fake.configure(page_size_other=1)
    first = api.get(f"models/{TRAINER}/versions").json()
    assert first["next"].startswith(f"{fake.base_url}/models/{TRAINER}/versions?cursor=")
    second = api.get(first["next"]).json()
    assert [v["id"] for v in first["results"] + second["results"]] == [TRAINER_VERSION, TRAINER_OLD_VERSION]
    assert second["next"] is None
    assert api.get(second["previous"]).json()["results"] == first["results"]


def test_version_get_and_404s(api: httpx.Client) -> None:
    version = api.get(f"models/{TRAINER}/versions/{TRAINER_OLD_VERSION}").json()
    assert set(version) == {"id", "created_at", "cog_version", "openapi_schema"}
    for path in (f"models/{TRAINER}/versions/{'0' * 64}", "models/nobody/nothing", "models/nobody/nothing/versions"):
        reply = api.get(path)
        assert reply.status_code == 404
        assert reply.headers["content-type"] == PROBLEM
        assert reply.json() == NOT_FOUND


def test_models_list_contains_the_seeds(api: httpx.Client, fake: FakeReplicate) -> None:
    names = {f"{m['owner']}/{m['name']}" for m in api.get("models").json()["results"]}
    assert {TRAINER, "simpletuner/advanced-trainer-h100", "cloudtuner-test/trained-lora"} <= names
    fake.configure(page_size_other=2)
    page, seen = api.get("models").json(), []
    while True:
        seen += [m["name"] for m in page["results"]]
        if page["next"] is None:
            break
        page = api.get(page["next"]).json()
    assert len(seen) == len(set(seen)) == len(names)


def test_create_model_then_conflict_and_validation(api: httpx.Client, fake: FakeReplicate) -> None:
    body = {"owner": "cloudtuner-test", "name": "new-lora", "visibility": "private", "hardware": "gpu-l40s"}
    created = api.post("models", json=body)
    assert created.status_code == 201
    assert created.json()["latest_version"] is None
    assert created.json()["run_count"] == 0
    assert api.get("models/cloudtuner-test/new-lora").status_code == 200
    assert api.post("models", json=body).status_code == 409
    missing = api.post("models", json={"owner": "x"})
    assert missing.status_code == 422
    assert {f["description"] for f in missing.json()["invalid_fields"]} == {
        "name is required",
        "visibility is required",
        "hardware is required",
    }
    seeded = fake.add_model("acme", "painter", versions=3, official=True)
    assert seeded["is_official"] is True
    assert len(api.get("models/acme/painter/versions").json()["results"]) == 3
