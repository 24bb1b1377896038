"""Trainings and predictions: create shapes, lifecycle, logs, scripts, cancel, lists, deadlines."""

from __future__ import annotations

import re
import tarfile
from io import BytesIO
from typing import Any

import httpx
import pytest

from tests.fakes.replicate import TRAINER_VERSION, FakeReplicate

from .helpers import DESTINATION, PROBLEM, TRAINER, TRAINING_PATH, create_prediction, create_training, trainer_input

PROGRESS = re.compile(r"Epoch \d+/\d+, Steps: +\d+%\|.{10}\| (\d+)/(\d+) \[.*step_loss=(\d+\.\d+)\]")
RUN_ID = re.compile(r"^[a-z0-9]{26}$")


def progress(logs: str) -> list[tuple[int, int, float]]:
    return [(int(a), int(b), float(c)) for a, b, c in PROGRESS.findall(logs)]


def test_training_create_reply_has_the_recorded_shape(api: httpx.Client, fake: FakeReplicate) -> None:
    reply = create_training(api)
    assert reply.status_code == 201
    body = reply.json()
    assert list(body) == ["id", "model", "version", "input", "logs", "error", "status", "created_at", "urls"]
    assert RUN_ID.match(body["id"])
    assert (body["model"], body["version"], body["status"], body["logs"]) == (TRAINER, TRAINER_VERSION, "starting", "")
    assert body["urls"]["get"] == f"{fake.base_url}/predictions/{body['id']}"
    assert body["urls"]["cancel"] == f"{fake.base_url}/predictions/{body['id']}/cancel"
    assert api.get(body["urls"]["get"]).json()["id"] == body["id"]


def test_training_runs_to_success_with_growing_logs(api: httpx.Client, fake: FakeReplicate) -> None:
    fake.script_next(processing_seconds=1.0, log_steps=8, total_steps=999)
    run_id = create_training(api, input=trainer_input(max_train_steps=80)).json()["id"]
    url = f"trainings/{run_id}"
    partial = fake.wait_until(
        lambda: (b := api.get(url).json())["status"] == "processing" and len(progress(b["logs"])) >= 2 and b,
        timeout=5,
        what="processing with some progress",
    )
    assert partial["started_at"]
    assert partial["completed_at"] is None
    assert partial["metrics"] == {}
    assert partial["output"] is None
    fake.wait_for_run(run_id, "succeeded")
    done = api.get(url).json()
    assert len(done["logs"]) > len(partial["logs"])
    assert done["logs"].startswith(partial["logs"])
    steps = progress(done["logs"])
    assert [s for s, _, _ in steps] == [10, 20, 30, 40, 50, 60, 70, 80]
    assert all(total == 80 and 0 < loss < 1 for _, total, loss in steps)
    assert "***** Running training *****" in done["logs"]
    assert done["logs"].rstrip().endswith("Training complete. Output: /src/output")
    assert done["urls"]["get"] == f"{fake.base_url}/trainings/{run_id}"
    assert done["metrics"]["predict_time"] >= 1.0
    assert done["metrics"]["total_time"] >= done["metrics"]["predict_time"]
    assert done["created_at"] <= done["started_at"] <= done["completed_at"]
    assert done["error"] is None
    version = done["output"]["version"]
    assert re.fullmatch(rf"{DESTINATION}:[0-9a-f]{{64}}", version)
    versions = api.get(f"models/{DESTINATION}/versions").json()["results"]
    assert versions[0]["id"] == version.split(":")[1]
    weights = httpx.get(done["output"]["weights"])
    with tarfile.open(fileobj=BytesIO(weights.content)) as archive:
        assert "lora.safetensors" in archive.getnames()


def test_scripted_failure(api: httpx.Client, fake: FakeReplicate) -> None:
    fake.script_next(outcome="fail", error="boom: out of memory", log_steps=10, stop_at=0.5)
    run_id = create_training(api).json()["id"]
    fake.wait_for_run(run_id, "failed")
    body = api.get(f"trainings/{run_id}").json()
    assert body["error"] == "boom: out of memory"
    assert body["output"] is None
    assert "RuntimeError: boom: out of memory" in body["logs"]
    assert 0 < len(progress(body["logs"])) < 10
    assert body["completed_at"]
    assert "predict_time" in body["metrics"]


def test_hang_then_manual_success_with_output_override(api: httpx.Client, fake: FakeReplicate) -> None:
    fake.script_next(outcome="hang", processing_seconds=0.2, stop_at=0.5, predict_time=123.5)
    run_id = create_prediction(api).json()["id"]
    fake.wait_for_run(run_id, "processing")
    with pytest.raises(TimeoutError):
        fake.wait_for_run(run_id, "succeeded", timeout=0.6)
    fake.advance(run_id, "succeeded", output="https://huggingface.co/me/lora")
    body = api.get(f"predictions/{run_id}").json()
    assert (body["status"], body["output"]) == ("succeeded", "https://huggingface.co/me/lora")
    assert body["metrics"]["predict_time"] == 123.5


def test_hold_starting_then_cancel(api: httpx.Client, fake: FakeReplicate) -> None:
    fake.script_next(hold_starting=True)
    run_id = create_training(api).json()["id"]
    with pytest.raises(TimeoutError):
        fake.wait_for_run(run_id, "processing", timeout=0.3)
    fake.advance(run_id, "processing")
    assert api.get(f"trainings/{run_id}").json()["status"] == "processing"
    canceled = api.post(f"trainings/{run_id}/cancel")
    assert canceled.status_code == 200
    body = canceled.json()
    assert (body["status"], body["output"]) == ("canceled", None)
    assert body["completed_at"]
    assert body["metrics"]["predict_time"] >= 0
    again = api.post(f"predictions/{run_id}/cancel").json()
    assert again["status"] == "canceled"
    assert again["completed_at"] == body["completed_at"]
    assert api.post("trainings/nope/cancel").status_code == 404


def test_cancel_before_start_reports_a_tiny_predict_time(api: httpx.Client, fake: FakeReplicate) -> None:
    fake.script_next(hold_starting=True)
    run_id = create_prediction(api).json()["id"]
    body = api.post(f"predictions/{run_id}/cancel").json()
    assert body["status"] == "canceled"
    assert body["started_at"] is None
    assert body["metrics"]["predict_time"] == pytest.approx(3e-06)


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        ({"destination": "cloudtuner-test/missing"}, 404, "The specified training destination does not exist"),
        ({"destination": "simpletuner/advanced-trainer"}, 404, "The specified training destination does not exist"),
        ({"destination": None, "extra": 1}, 422, "- Additional property extra is not allowed\n"),
    ],
)
def test_training_create_errors(api: httpx.Client, body: dict[str, Any], status: int, detail: str) -> None:
    payload = {"destination": DESTINATION, "input": trainer_input(), **body}
    payload = {k: v for k, v in payload.items() if v is not None}
    reply = api.post(TRAINING_PATH, json=payload)
    assert reply.status_code == status
    assert reply.headers["content-type"] == PROBLEM
    assert detail in reply.json()["detail"]
    if status == 404:
        assert reply.json() == {"detail": detail, "status": 404}


def test_training_missing_destination_and_unknown_version(api: httpx.Client) -> None:
    reply = api.post(TRAINING_PATH, json={"input": trainer_input()})
    assert reply.status_code == 422
    assert reply.json()["invalid_fields"] == [
        {"type": "required", "field": "", "description": "destination is required"}
    ]
    bad = api.post(f"models/{TRAINER}/versions/{'a' * 64}/trainings", json={"destination": DESTINATION, "input": {}})
    assert bad.status_code == 422
    assert bad.json()["title"] == "Invalid version or not permitted"
    assert api.post(f"models/x/y/versions/{'a' * 64}/trainings", json={}).status_code == 404


def test_prediction_version_forms_and_errors(api: httpx.Client) -> None:
    assert api.post("predictions", json={"version": TRAINER_VERSION, "input": trainer_input()}).status_code == 201
    full = create_prediction(api)
    assert full.status_code == 201
    assert full.json()["urls"]["get"].endswith(f"/predictions/{full.json()['id']}")
    assert full.json()["data_removed"] is False
    unknown = api.post("predictions", json={"version": "b" * 64, "input": {}})
    assert unknown.status_code == 422
    assert unknown.json() == {
        "title": "Invalid version or not permitted",
        "detail": "The specified version does not exist (or perhaps you don't have permission to use it?)",
        "status": 422,
    }
    model_form = api.post("predictions", json={"version": TRAINER, "input": trainer_input()})
    assert model_form.status_code == 422
    extra = api.post("predictions", json={"model": TRAINER, "input": {}})
    assert extra.json()["detail"] == "- version is required\n- Additional property model is not allowed\n"
    assert [f["type"] for f in extra.json()["invalid_fields"]] == ["required", "additional_property_not_allowed"]
    assert (
        api.post("predictions", content=b"{not json", headers={"content-type": "application/json"}).status_code == 400
    )


def test_input_is_validated_against_the_cog_schema(api: httpx.Client, fake: FakeReplicate) -> None:
    missing = create_prediction(api, input={"dataloader_json": "[]"})
    assert missing.status_code == 422
    assert missing.json()["detail"] == "- input: config_json is required\n"
    assert missing.json()["invalid_fields"] == [
        {"type": "required", "field": "input", "description": "config_json is required"}
    ]
    wrong = create_prediction(api, input=trainer_input(max_train_steps="ten", return_logs="yes", images="not a url"))
    types = {(f["type"], f["field"]) for f in wrong.json()["invalid_fields"]}
    assert types == {
        ("invalid_type", "input.max_train_steps"),
        ("invalid_type", "input.return_logs"),
        ("format", "input.images"),
    }
    low = create_prediction(api, input=trainer_input(max_train_steps=0))
    assert low.json()["invalid_fields"][0]["type"] == "number_gte"
    simpletuner_extras = trainer_input(lycoris_json="{}", webhook_config="[]")
    assert create_prediction(api, input=simpletuner_extras).status_code == 201
    fake.configure(reject_unknown_input=True)
    strict = create_prediction(api, input=simpletuner_extras)
    assert strict.status_code == 422
    assert {f["description"] for f in strict.json()["invalid_fields"]} == {
        "Additional property lycoris_json is not allowed",
        "Additional property webhook_config is not allowed",
    }
    fake.configure(validate_input=False, reject_unknown_input=True)
    assert create_prediction(api, input={"anything": 1}).status_code == 201


def test_trainer_prediction_output_follows_the_inputs(api: httpx.Client, fake: FakeReplicate) -> None:
    hub = create_prediction(api, input=trainer_input(hub_model_id="me/my-lora", hf_token="hf_x")).json()["id"]
    s3 = create_prediction(api, input=trainer_input(s3_bucket="bucket", s3_base_path="runs/1")).json()["id"]
    plain = create_prediction(api).json()["id"]
    outputs = {run: fake.wait_for_run(run, "succeeded")["output"] for run in (hub, s3, plain)}
    assert outputs == {
        hub: "https://huggingface.co/me/my-lora",
        s3: "s3://bucket/runs/1",
        plain: "Training complete. Output: /src/output",
    }


def test_missing_input_file_fails_the_run(api: httpx.Client, fake: FakeReplicate) -> None:
    file_id = api.post("files", files={"content": ("d.zip", b"PK")}).json()["id"]
    url = f"{fake.base_url}/files/{file_id}"
    api.delete(f"files/{file_id}")
    run_id = create_prediction(api, input=trainer_input(images=url)).json()["id"]
    run = fake.wait_for_run(run_id, "failed")
    assert run["error"] == f"Failed to download {url}: 404 Not Found"


def test_lists_are_newest_first_with_cursor_links(api: httpx.Client, fake: FakeReplicate) -> None:
    fake.configure(page_size_runs=2)
    trainings = [create_training(api).json()["id"] for _ in range(5)]
    predictions = [create_prediction(api).json()["id"] for _ in range(3)]
    page, seen = api.get("trainings").json(), []
    assert page["previous"] is None
    while True:
        assert len(page["results"]) <= 2
        seen += [r["id"] for r in page["results"]]
        if page["next"] is None:
            break
        assert page["next"].startswith(f"{fake.base_url}/trainings?cursor=")
        page = api.get(page["next"]).json()
    assert seen == trainings[::-1]
    listed = api.get("predictions").json()
    assert [r["id"] for r in listed["results"]] == predictions[::-1][:2]
    assert all(r["urls"]["get"].startswith(f"{fake.base_url}/") for r in listed["results"])
    created = api.get(f"predictions/{predictions[1]}").json()["created_at"]
    after = api.get("predictions", params={"created_after": created}).json()["results"]
    assert [r["id"] for r in after] == [predictions[2]]
    assert api.get("predictions", params={"source": "web"}).json()["results"] == []
    assert api.get("trainings/unknown").json() == {
        "detail": "The requested resource could not be found.",
        "status": 404,
    }
    assert api.get(f"trainings/{predictions[0]}").status_code == 404


def test_prefer_wait_holds_the_create_until_done(api: httpx.Client, fake: FakeReplicate) -> None:
    reply = create_prediction(api, headers={"Prefer": "wait=5"})
    assert reply.status_code == 201
    assert reply.headers["preference-applied"] == "wait=5"
    assert reply.json()["status"] == "succeeded"
    fake.script_next(outcome="hang")
    held = create_prediction(api, headers={"Prefer": "wait=1"})
    assert held.json()["status"] == "processing"


def test_cancel_after_deadline_aborts_or_cancels(api: httpx.Client, fake: FakeReplicate) -> None:
    assert create_prediction(api, headers={"Cancel-After": "2s"}).status_code == 422
    fake.configure(cancel_after_minimum=0)
    fake.script_next(hold_starting=True)
    queued = create_prediction(api, headers={"Cancel-After": "0.2"}).json()
    assert queued["deadline"] > queued["created_at"]
    fake.script_next(outcome="hang")
    running = create_prediction(api, headers={"Cancel-After": "0m0.4s"}).json()["id"]
    assert fake.wait_for_run(queued["id"], "aborted")["status"] == "aborted"
    assert fake.wait_for_run(running, "canceled")["status"] == "canceled"
    assert create_prediction(api, headers={"Cancel-After": "soon"}).status_code == 422


def test_official_model_endpoint(api: httpx.Client, fake: FakeReplicate) -> None:
    assert api.post(f"models/{TRAINER}/predictions", json={"input": trainer_input()}).status_code == 404
    fake.add_model("acme", "painter", official=True, versions=1)
    reply = api.post("models/acme/painter/predictions", json={"input": {"prompt": "a cat"}})
    assert reply.status_code == 201
    done = fake.wait_for_run(reply.json()["id"], "succeeded")
    assert done["output"][0].startswith(fake.root_url + "/_fake/deliveries/")
    assert httpx.get(done["output"][0]).status_code == 200
    assert "Using seed:" in done["logs"]
    assert api.post("predictions", json={"version": "acme/painter", "input": {"prompt": "x"}}).status_code == 201


def test_queued_scripts_match_by_webhook_and_input(api: httpx.Client, fake: FakeReplicate) -> None:
    fake.script_next(outcome="fail", error="job-b failed", input_contains='"tracker_run_name": "job-b"')
    fake.script_next(outcome="hang", webhook_contains="job=a")
    fake.script_next(total_steps=30, log_steps=3, kind="prediction")
    config_b = trainer_input(config_json='{"tracker_run_name": "job-b"}')
    b = create_training(api, input=config_b).json()["id"]
    a = create_training(api, webhook="http://127.0.0.1:9/hook?job=a").json()["id"]
    plain = create_prediction(api, input=trainer_input(config_json="{}")).json()["id"]
    assert fake.wait_for_run(b, "failed")["error"] == "job-b failed"
    assert fake.wait_for_run(plain, "succeeded")["script"]["total_steps"] == 30
    assert [s for s, _, _ in progress(fake.run(plain)["logs"])] == [10, 20, 30]
    assert fake.run(a)["status"] == "processing"
    assert fake.scripts()["queued"] == []


def test_legacy_webhook_completed_field(api: httpx.Client, fake: FakeReplicate) -> None:
    hook = "http://127.0.0.1:9/legacy"
    run_id = create_training(api, webhook_completed=hook).json()["id"]
    (run,) = fake.runs(webhook=hook)
    assert run["id"] == run_id
    assert run["webhook_events_filter"] == ["completed"]
    assert create_training(api, webhook_completed="https://example.com/x").status_code == 422


def test_web_page_of_a_run(api: httpx.Client, fake: FakeReplicate) -> None:
    body = create_prediction(api).json()
    page = httpx.get(body["urls"]["web"])
    assert page.status_code == 200
    assert body["id"] in page.text
    assert httpx.get(f"{fake.root_url}/p/unknown").status_code == 404
