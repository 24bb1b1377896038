"""Real signed deliveries from the fake, verified and mapped with the provider's helpers."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from cloudtuner.core.errors import ProviderUnavailableError, WebhookRejectedError
from cloudtuner.providers.base import CloudJobStatus
from cloudtuner.providers.replicate import ReplicateProvider
from cloudtuner.providers.replicate.webhooks import (
    WebhookHeadersMissingError,
    WebhookSignatureError,
    WebhookSignatureMismatchError,
    WebhookTimestampError,
    sign,
    verify_signature,
)
from tests.fakes.replicate import FakeReplicate

from .conftest import run_request


@dataclass(frozen=True)
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes


class Hook:
    """Records POSTs on 127.0.0.1 and answers 204."""

    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []
        self.lock = threading.Lock()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                with hook.lock:
                    hook.deliveries.append(Delivery(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/api/webhooks/replicate"

    def snapshot(self) -> list[Delivery]:
        with self.lock:
            return list(self.deliveries)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def hook() -> Iterator[Hook]:
    receiver = Hook()
    yield receiver
    receiver.close()


def headers_of(delivery: Delivery) -> dict[str, str]:
    return {name: delivery.headers[name] for name in ("webhook-id", "webhook-timestamp", "webhook-signature")}


async def test_real_deliveries_parse_into_events(provider: ReplicateProvider, fake: FakeReplicate, hook: Hook) -> None:
    request = run_request()
    info = await provider.run_job(run_request(job_id=request.job_id, webhook_url=f"{hook.url}?job_id={request.job_id}"))
    fake.wait_for_webhooks(1, info.provider_job_id, event="completed", outcome="delivered", timeout=10)
    deliveries = hook.snapshot()
    assert len(deliveries) >= 2
    events = []
    for delivery in deliveries:
        assert delivery.path.endswith(f"?job_id={request.job_id}")
        event = await provider.parse_webhook(delivery.headers, delivery.body, datetime.now(UTC))
        assert event.event_id == delivery.headers["webhook-id"]
        assert event.info.provider_job_id == info.provider_job_id
        assert event.info.reference == request.job_id
        events.append(event)
    assert len({e.event_id for e in events}) == len(events)
    final = events[-1]
    assert final.info.status is CloudJobStatus.COMPLETED
    assert final.info.cost_usd is not None and final.info.cost_usd > 0
    assert final.info.progress is not None and final.info.progress.stage == "complete"
    assert final.logs is not None and "Training complete" in final.logs
    assert len(fake.requests(path="/v1/webhooks/default/secret")) == 1  # cached

    # The same signature also checks out with the pure helper.
    secret = await provider.webhook_secret()
    last = deliveries[-1]
    h = headers_of(last)
    verify_signature(
        secret, h["webhook-id"], h["webhook-timestamp"], last.body, h["webhook-signature"], now=datetime.now(UTC)
    )
    with pytest.raises(WebhookSignatureMismatchError):
        await provider.parse_webhook(h, last.body.replace(b"succeeded", b"failed"), datetime.now(UTC))
    with pytest.raises(WebhookTimestampError):
        await provider.parse_webhook(h, last.body, datetime.now(UTC) + timedelta(minutes=10))


def signed(secret: str, payload: dict[str, Any], *, webhook_id: str = "msg_test") -> tuple[dict[str, str], bytes]:
    body = json.dumps(payload).encode()
    timestamp = str(int(time.time()))
    headers = {
        "webhook-id": webhook_id,
        "webhook-timestamp": timestamp,
        "webhook-signature": sign(secret, webhook_id, timestamp, body),
    }
    return headers, body


PREDICTION = {"id": "p0000000000000000000000000", "model": "simpletuner/advanced-trainer", "status": "processing"}


async def test_missing_headers_do_not_reach_replicate(provider: ReplicateProvider, fake: FakeReplicate) -> None:
    with pytest.raises(WebhookHeadersMissingError):
        await provider.parse_webhook({}, b"{}", datetime.now(UTC))
    assert fake.requests() == []


async def test_forged_signatures_refetch_the_secret_at_most_once(
    provider: ReplicateProvider, fake: FakeReplicate
) -> None:
    for _ in range(3):
        headers, body = signed("whsec_Zm9yZ2VkLXNlY3JldC1rZXk=", PREDICTION)
        with pytest.raises(WebhookSignatureMismatchError):
            await provider.parse_webhook(headers, body, datetime.now(UTC))
    assert len(fake.requests(path="/v1/webhooks/default/secret")) == 2


async def test_a_rotated_secret_is_picked_up(provider: ReplicateProvider, fake: FakeReplicate) -> None:
    headers, body = signed(fake.webhook_secret, PREDICTION)
    assert (await provider.parse_webhook(headers, body, datetime.now(UTC))).info.status is CloudJobStatus.RUNNING
    rotated = "whsec_cm90YXRlZC1zZWNyZXQta2V5LTAx"
    fake.configure(webhook_secret=rotated)
    headers, body = signed(rotated, PREDICTION, webhook_id="msg_after_rotation")
    event = await provider.parse_webhook(headers, body, datetime.now(UTC))
    assert event.event_id == "msg_after_rotation"


async def test_signed_body_that_is_not_a_prediction(provider: ReplicateProvider, fake: FakeReplicate) -> None:
    headers, body = signed(fake.webhook_secret, {"hello": "world"})
    with pytest.raises(WebhookRejectedError) as caught:
        await provider.parse_webhook(headers, body, datetime.now(UTC))
    assert not isinstance(caught.value, WebhookSignatureError)


async def test_secret_unavailable_or_malformed(provider: ReplicateProvider, fake: FakeReplicate) -> None:
    headers, body = signed(fake.webhook_secret, PREDICTION)
    fake.fail_next(503, count=None, method="GET", path="/v1/webhooks/default/secret")
    with pytest.raises(ProviderUnavailableError):
        await provider.parse_webhook(headers, body, datetime.now(UTC))
    fake.clear_faults()
    fake.configure(webhook_secret="whsec_***not-base64***")
    with pytest.raises(ProviderUnavailableError, match="malformed"):
        await provider.parse_webhook(headers, body, datetime.now(UTC))
