"""Signed webhooks: signature scheme, event filter, logs throttle, retries, faults, loopback only."""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import math
from datetime import datetime

import httpx
import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from tests.fakes.replicate import FakeReplicate, sign

from .helpers import create_prediction, create_training
from .receiver import Receiver


def own_check(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """Signature check written here, independent of the fake's code."""
    key = base64.b64decode(secret.split("_", 1)[1])
    content = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()
    return any(
        part.startswith("v1,") and hmac.compare_digest(part[3:], expected)
        for part in headers["webhook-signature"].split(" ")
    )


def test_sign_matches_the_shared_test_vector() -> None:
    signature = sign(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}'
    )
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    with pytest.raises(ValueError, match="whsec_"):
        sign("secret", "m", 1, b"")


def test_completed_webhook_is_signed_and_carries_the_object(
    api: httpx.Client, fake: FakeReplicate, receiver: Receiver
) -> None:
    run_id = create_training(api, webhook=receiver.url + "?job=42", webhook_events_filter=["completed"]).json()["id"]
    fake.wait_for_webhooks(1, run_id, outcome="delivered")
    (hit,) = receiver.snapshot()
    assert hit.path == "/hook?job=42"
    assert hit.headers["content-type"] == "application/json"
    assert hit.headers["webhook-id"].startswith("msg_")
    secret = api.get("webhooks/default/secret").json()["key"]
    Webhook(secret).verify(hit.body, hit.headers)
    assert own_check(secret, hit.headers, hit.body)
    body = hit.json()
    assert body == api.get(f"trainings/{run_id}").json()
    assert body["status"] == "succeeded"
    record = fake.webhooks(run_id)[0]
    assert (record["response_status"], record["events"], record["attempt"]) == (200, ["completed"], 1)
    assert record["signature"] == hit.headers["webhook-signature"]


def test_events_filter_start_and_completed(api: httpx.Client, fake: FakeReplicate, receiver: Receiver) -> None:
    run_id = create_prediction(api, webhook=receiver.url, webhook_events_filter=["start", "completed"]).json()["id"]
    fake.wait_for_run(run_id, "succeeded")
    fake.wait_for_webhooks(2, run_id)
    statuses = [h.json()["status"] for h in receiver.snapshot()]
    assert statuses == ["processing", "succeeded"]
    assert len({h.headers["webhook-id"] for h in receiver.snapshot()}) == 2


def test_start_event_at_creation_when_configured(api: httpx.Client, fake: FakeReplicate, receiver: Receiver) -> None:
    fake.configure(start_event_status="starting")
    fake.script_next(hold_starting=True)
    run_id = create_prediction(api, webhook=receiver.url, webhook_events_filter=["start"]).json()["id"]
    (record,) = fake.wait_for_webhooks(1, run_id, outcome="delivered")
    assert record["run_status"] == "starting"
    assert [h.json()["status"] for h in receiver.snapshot()] == ["starting"]


def test_default_events_are_configurable(api: httpx.Client, fake: FakeReplicate, receiver: Receiver) -> None:
    first = create_prediction(api, webhook=receiver.url).json()["id"]
    fake.wait_for_run(first, "succeeded")
    fake.wait_for_webhooks(1, first)
    assert [r["events"] for r in fake.webhooks(first)] == [["completed", "output"]]
    fake.configure(default_webhook_events=["start"])
    second = create_prediction(api, webhook=receiver.url).json()["id"]
    fake.wait_for_run(second, "succeeded")
    fake.wait_for_webhooks(1, second)
    assert [r["events"] for r in fake.webhooks(second)] == [["start"]]


def test_logs_events_are_throttled_to_one_per_half_second(
    api: httpx.Client, fake: FakeReplicate, receiver: Receiver
) -> None:
    fake.script_next(processing_seconds=1.6, log_steps=40, total_steps=400)
    run_id = create_prediction(api, webhook=receiver.url, webhook_events_filter=["logs"]).json()["id"]
    fake.wait_for_run(run_id, "succeeded", timeout=10)
    fake.wait_until(
        lambda: any(r["run_status"] == "succeeded" for r in fake.webhooks(run_id, outcome="delivered")),
        what="the terminal logs delivery",
    )
    hits = receiver.snapshot()
    intermediate = [h for h in hits if h.json()["status"] == "processing"]
    # The throttle is a property of sending: measure it at the fake, not at the receiver, whose
    # arrival times also carry delivery jitter on a loaded machine.
    sent = [
        datetime.fromisoformat(r["sent_at"].replace("Z", "+00:00"))
        for r in fake.webhooks(run_id, outcome="delivered")
        if r["run_status"] == "processing"
    ]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(sorted(sent))]
    assert gaps
    assert min(gaps) >= 0.4
    assert len(intermediate) <= math.ceil(1.6 / 0.5) + 1
    lengths = [len(h.json()["logs"]) for h in hits]
    assert lengths == sorted(lengths)
    assert hits[-1].json()["status"] == "succeeded"


def test_terminal_webhook_is_retried_with_the_same_id(
    api: httpx.Client, fake: FakeReplicate, receiver: Receiver
) -> None:
    receiver.statuses.extend([500, 503, 200])
    run_id = create_training(api, webhook=receiver.url, webhook_events_filter=["completed"]).json()["id"]
    fake.wait_for_webhooks(1, run_id, outcome="delivered")
    records = fake.webhooks(run_id)
    assert [(r["attempt"], r["response_status"], r["outcome"]) for r in records] == [
        (1, 500, "failed"),
        (2, 503, "failed"),
        (3, 200, "delivered"),
    ]
    assert len({h.headers["webhook-id"] for h in receiver.snapshot()}) == 1
    assert len({h.headers["webhook-signature"] for h in receiver.snapshot()}) >= 1


def test_intermediate_webhook_is_not_retried_and_terminal_gives_up(
    api: httpx.Client, fake: FakeReplicate, receiver: Receiver
) -> None:
    receiver.statuses.extend([500] * 10)
    run_id = create_prediction(api, webhook=receiver.url, webhook_events_filter=["start", "completed"]).json()["id"]
    attempts = 1 + 1 + len(fake.config()["webhook_retry_delays"])
    fake.wait_for_webhooks(attempts, run_id)
    records = fake.webhooks(run_id)
    assert [r["events"] for r in records] == [["start"]] + [["completed"]] * (attempts - 1)
    assert all(r["outcome"] == "failed" for r in records)


def test_unreachable_receiver_is_recorded_as_failed(api: httpx.Client, fake: FakeReplicate) -> None:
    fake.configure(webhook_retry_delays=[])
    run_id = create_prediction(api, webhook="http://127.0.0.1:9/hook", webhook_events_filter=["completed"]).json()["id"]
    (record,) = fake.wait_for_webhooks(1, run_id)
    assert record["outcome"] == "failed"
    assert record["error"]
    assert record["response_status"] is None


def test_non_loopback_webhooks_are_rejected_or_recorded(api: httpx.Client, fake: FakeReplicate) -> None:
    reply = create_training(api, webhook="https://example.com/hook")
    assert reply.status_code == 422
    assert reply.json()["invalid_fields"][0]["field"] == "webhook"
    assert fake.count_runs() == 0
    assert create_training(api, webhook="ftp://127.0.0.1/x").status_code == 422
    assert create_training(api, webhook_events_filter=["failed"]).status_code == 422
    fake.configure(non_loopback_webhooks="record")
    run_id = create_training(api, webhook="https://example.com/hook", webhook_events_filter=["completed"]).json()["id"]
    (record,) = fake.wait_for_webhooks(1, run_id)
    assert record["outcome"] == "refused"
    assert record["webhook_timestamp"] is None


def test_drop_fault(api: httpx.Client, fake: FakeReplicate, receiver: Receiver) -> None:
    fake.drop_webhooks(1, event="completed")
    run_id = create_training(api, webhook=receiver.url, webhook_events_filter=["start", "completed"]).json()["id"]
    fake.wait_for_run(run_id, "succeeded")
    records = fake.wait_for_webhooks(2, run_id)
    assert [(r["events"], r["outcome"]) for r in records] == [(["start"], "delivered"), (["completed"], "dropped")]
    assert [h.json()["status"] for h in receiver.snapshot()] == ["processing"]


def test_duplicate_fault(api: httpx.Client, fake: FakeReplicate, receiver: Receiver) -> None:
    fake.duplicate_webhooks(1)
    run_id = create_training(api, webhook=receiver.url, webhook_events_filter=["completed"]).json()["id"]
    fake.wait_for_webhooks(2, run_id, outcome="delivered")
    first, second = receiver.snapshot()
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert first.body == second.body
    assert [r["duplicate"] for r in fake.webhooks(run_id)] == [False, True]


def test_reorder_fault_delivers_newest_first(api: httpx.Client, fake: FakeReplicate, receiver: Receiver) -> None:
    fake.reorder_webhooks(2, hold_seconds=5)
    run_id = create_training(api, webhook=receiver.url, webhook_events_filter=["start", "completed"]).json()["id"]
    fake.wait_for_webhooks(2, run_id, outcome="delivered")
    assert [h.json()["status"] for h in receiver.snapshot()] == ["succeeded", "processing"]
    assert all(r["reordered"] for r in fake.webhooks(run_id))


def test_reorder_batch_released_by_flush(api: httpx.Client, fake: FakeReplicate, receiver: Receiver) -> None:
    fake.reorder_webhooks(3, hold_seconds=60)
    run_id = create_training(api, webhook=receiver.url, webhook_events_filter=["start", "completed"]).json()["id"]
    fake.wait_for_run(run_id, "succeeded")
    fake.wait_until(lambda: fake.flush_webhooks() == 2, timeout=5, what="two held messages")
    fake.wait_for_webhooks(2, run_id, outcome="delivered")
    assert [h.json()["status"] for h in receiver.snapshot()] == ["succeeded", "processing"]


def test_timestamp_offset_makes_stale_signatures(api: httpx.Client, fake: FakeReplicate, receiver: Receiver) -> None:
    fake.configure(webhook_timestamp_offset=-3600)
    run_id = create_training(api, webhook=receiver.url, webhook_events_filter=["completed"]).json()["id"]
    fake.wait_for_webhooks(1, run_id, outcome="delivered")
    (hit,) = receiver.snapshot()
    secret = fake.webhook_secret
    assert own_check(secret, hit.headers, hit.body)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(hit.body, hit.headers)
    tampered = dict(hit.headers, **{"webhook-timestamp": str(int(hit.headers["webhook-timestamp"]) + 1)})
    assert not own_check(secret, tampered, hit.body)
