"""Request fault switches and request/run introspection, over real HTTP."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.fakes.replicate import ControlError, FakeReplicate

from .helpers import PROBLEM, TRAINING_PATH, create_prediction, create_training, trainer_input

CREDIT = {
    "title": "Insufficient credit",
    "detail": "You have insufficient credit to run this model. Go to https://replicate.com/account/billing#billing "
    "to purchase credit. Once you purchase credit, please wait a few minutes before trying again.",
    "status": 402,
}


def test_throttle_with_retry_after_then_normal(api: httpx.Client, fake: FakeReplicate) -> None:
    fake.throttle_next(2, retry_after=7, method="GET", path="/v1/trainings*")
    assert api.get("account").status_code == 200
    for _ in range(2):
        reply = api.get("trainings")
        assert reply.status_code == 429
        assert reply.headers["retry-after"] == "7"
        assert reply.headers["ratelimit-remaining"] == "0"
        assert reply.json() == {"detail": "Request was throttled. Your rate limit resets in ~30s."}
    assert api.get("trainings").status_code == 200
    fake.throttle_next(retry_after=None)
    assert "retry-after" not in api.get("account").headers


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors(api: httpx.Client, fake: FakeReplicate, status: int) -> None:
    fake.fail_next(status, method="GET")
    assert api.post("predictions", json={}).status_code == 422
    reply = api.get("hardware")
    assert reply.status_code == status
    assert reply.headers["content-type"] == PROBLEM
    assert reply.json()["status"] == status
    assert api.get("hardware").status_code == 200


def test_slow_requests(api: httpx.Client, fake: FakeReplicate) -> None:
    fake.slow_next(0.4, path="/v1/account")
    started = time.monotonic()
    assert api.get("account").status_code == 200
    assert time.monotonic() - started >= 0.4
    started = time.monotonic()
    api.get("account")
    assert time.monotonic() - started < 0.4


def test_dropped_create_reply_still_creates_the_run(api: httpx.Client, fake: FakeReplicate) -> None:
    fake.drop_reply_next()
    hook = "http://127.0.0.1:9/hook?job=dropped"
    with pytest.raises(httpx.RemoteProtocolError):
        create_training(api, webhook=hook)
    (run,) = fake.runs(webhook=hook)
    assert run["kind"] == "training"
    assert fake.wait_for_run(run["id"], "succeeded")["status"] == "succeeded"
    assert api.get("trainings").json()["results"][0]["id"] == run["id"]
    (record,) = fake.requests(method="POST", path="/v1/models/*")
    assert (record["fault_kind"], record["status"]) == ("drop_reply", None)


def test_timed_out_create_reply_still_creates_the_run(fake: FakeReplicate) -> None:
    fake.timeout_reply_next(hold_seconds=5)
    headers = {"Authorization": f"Token {fake.token}"}
    with httpx.Client(base_url=fake.base_url + "/", headers=headers, timeout=httpx.Timeout(5, read=0.3)) as client:
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            create_prediction(client)
        assert time.monotonic() - started < 2
        assert client.get("account").status_code == 200
    assert fake.count_runs(kind="prediction") == 1


def test_error_after_processing(api: httpx.Client, fake: FakeReplicate) -> None:
    fake.fail_next(500, method="POST", path="/v1/" + TRAINING_PATH, process=True)
    assert create_training(api).status_code == 500
    assert fake.count_runs(kind="training") == 1


def test_insufficient_credit_on_create_only(api: httpx.Client, fake: FakeReplicate) -> None:
    fault_id = fake.insufficient_credit(count=None)
    for reply in (create_training(api), create_prediction(api)):
        assert reply.status_code == 402
        assert reply.headers["content-type"] == PROBLEM
        assert reply.json() == CREDIT
    assert api.get("trainings").status_code == 200
    assert fake.faults()["request_faults"][0]["hits"] == 2
    fake.remove_fault(fault_id)
    assert create_training(api).status_code == 201
    assert fake.faults() == {"request_faults": [], "webhook_faults": []}
    with pytest.raises(ControlError):
        fake.remove_fault(fault_id)


def test_faults_can_be_listed_and_cleared(api: httpx.Client, fake: FakeReplicate) -> None:
    fake.fail_next(503, count=3)
    fake.drop_webhooks(2)
    listed = fake.faults()
    assert listed["request_faults"][0]["count"] == 3
    assert listed["webhook_faults"][0]["kind"] == "drop"
    fake.clear_faults()
    assert api.get("account").status_code == 200
    with pytest.raises(ControlError, match="unknown fault field"):
        fake.add_fault(kind="status", colour="red")
    with pytest.raises(ControlError, match="kind must be"):
        fake.add_fault(kind="explode")


def test_request_records(api: httpx.Client, fake: FakeReplicate) -> None:
    fake.clear_requests()
    create_training(api)
    api.get("trainings", params={"cursor": "abc"})
    httpx.get(f"{fake.base_url}/account")
    records = fake.requests()
    assert [(r["method"], r["path"], r["status"]) for r in records] == [
        ("POST", "/v1/" + TRAINING_PATH, 201),
        ("GET", "/v1/trainings", 400),
        ("GET", "/v1/account", 401),
    ]
    assert records[0]["json"]["input"] == trainer_input()
    assert records[0]["token"] == fake.token
    assert records[1]["query"] == "cursor=abc"
    assert records[2]["token"] is None
    assert len(fake.requests(method="get", path="/v1/train*")) == 1


def test_run_counts_by_webhook_and_input(api: httpx.Client, fake: FakeReplicate) -> None:
    a, b = "http://127.0.0.1:9/hook?job=a", "http://127.0.0.1:9/hook?job=b"
    create_training(api, webhook=a)
    create_training(api, webhook=a, input=trainer_input(max_train_steps=7))
    create_prediction(api, webhook=b)
    create_prediction(api)
    assert fake.runs_by_webhook() == {a: 2, b: 1, "": 1}
    assert fake.count_runs(webhook=a) == 2
    assert fake.count_runs(webhook_contains="job=") == 3
    assert fake.count_runs(input={"max_train_steps": 7}) == 1
    assert fake.count_runs(kind="prediction", model="simpletuner/advanced-trainer") == 2
    assert fake.count_runs(destination="cloudtuner-test/trained-lora") == 2
    with pytest.raises(ControlError, match="unknown run filter"):
        fake.runs(colour="red")
