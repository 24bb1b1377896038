"""Standard Webhooks signature verification."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from cloudtuner.core.errors import WebhookRejectedError
from cloudtuner.providers.replicate.webhooks import (
    WebhookHeadersMissingError,
    WebhookRejection,
    WebhookSignatureError,
    WebhookSignatureMismatchError,
    WebhookTimestampError,
    parse_delivery,
    sign,
    verify_signature,
)
from tests.fakes.replicate import sign as fake_sign

# The shared test vector of reference section 8.3 (replicate-python tests, Svix docs).
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
TIMESTAMP = "1614265330"
BODY = b'{"test": 2432232314}'
SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
AT = datetime.fromtimestamp(int(TIMESTAMP), UTC)


def test_reference_vector() -> None:
    verify_signature(SECRET, MSG_ID, TIMESTAMP, BODY, SIGNATURE, now=AT)
    assert sign(SECRET, MSG_ID, TIMESTAMP, BODY) == SIGNATURE


def test_agrees_with_the_fake_and_standardwebhooks() -> None:
    from standardwebhooks.webhooks import Webhook

    secret = "whsec_ZmFrZS1yZXBsaWNhdGUtd2ViaG9vay1rZXk="
    at = datetime.fromtimestamp(1700000000, UTC)
    ours = sign(secret, "msg_1", "1700000000", b'{"id": "x"}')
    assert ours == fake_sign(secret, "msg_1", 1700000000, b'{"id": "x"}')
    assert ours == Webhook(secret).sign("msg_1", at, '{"id": "x"}')
    verify_signature(secret, "msg_1", "1700000000", b'{"id": "x"}', ours, now=at)


def test_several_signatures_any_may_match() -> None:
    header = f"v1,AAAA v2,{SIGNATURE[3:]} v1,bm90LWJhc2U2NA== {SIGNATURE}"
    verify_signature(SECRET, MSG_ID, TIMESTAMP, BODY, header, now=AT)
    with pytest.raises(WebhookSignatureMismatchError):
        verify_signature(SECRET, MSG_ID, TIMESTAMP, BODY, f"v2,{SIGNATURE[3:]} v1,!!!", now=AT)


@pytest.mark.parametrize("shift", [timedelta(minutes=5, seconds=1), -timedelta(minutes=5, seconds=1)])
def test_stale_or_future_timestamp(shift: timedelta) -> None:
    with pytest.raises(WebhookTimestampError) as caught:
        verify_signature(SECRET, MSG_ID, TIMESTAMP, BODY, SIGNATURE, now=AT + shift)
    assert caught.value.reason is WebhookRejection.STALE_TIMESTAMP
    verify_signature(SECRET, MSG_ID, TIMESTAMP, BODY, SIGNATURE, now=AT + timedelta(minutes=5))
    verify_signature(SECRET, MSG_ID, TIMESTAMP, BODY, SIGNATURE, now=AT + shift, tolerance=timedelta(minutes=6))


def test_unreadable_timestamp() -> None:
    with pytest.raises(WebhookTimestampError):
        verify_signature(SECRET, MSG_ID, "yesterday", BODY, SIGNATURE, now=AT)


def test_tampered_body_wrong_secret_wrong_id() -> None:
    with pytest.raises(WebhookSignatureMismatchError) as caught:
        verify_signature(SECRET, MSG_ID, TIMESTAMP, BODY + b" ", SIGNATURE, now=AT)
    assert caught.value.reason is WebhookRejection.BAD_SIGNATURE
    with pytest.raises(WebhookSignatureMismatchError):
        verify_signature("whsec_ZmFrZS1yZXBsaWNhdGUtd2ViaG9vay1rZXk=", MSG_ID, TIMESTAMP, BODY, SIGNATURE, now=AT)
    with pytest.raises(WebhookSignatureMismatchError):
        verify_signature(SECRET, "msg_other", TIMESTAMP, BODY, SIGNATURE, now=AT)


@pytest.mark.parametrize(
    ("webhook_id", "timestamp", "signature"),
    [("", TIMESTAMP, SIGNATURE), (MSG_ID, "", SIGNATURE), (MSG_ID, TIMESTAMP, "")],
)
def test_missing_headers(webhook_id: str, timestamp: str, signature: str) -> None:
    with pytest.raises(WebhookHeadersMissingError) as caught:
        verify_signature(SECRET, webhook_id, timestamp, BODY, signature, now=AT)
    assert caught.value.reason is WebhookRejection.MISSING_HEADERS


def test_errors_are_webhook_rejections_with_codes() -> None:
    for cls in (WebhookHeadersMissingError, WebhookTimestampError, WebhookSignatureMismatchError):
        error = cls()
        assert isinstance(error, WebhookSignatureError)
        assert isinstance(error, WebhookRejectedError)
        assert error.code.startswith("webhook_")
        assert error.message and "whsec" not in error.message


def test_malformed_secret_is_a_configuration_problem() -> None:
    with pytest.raises(ValueError, match="secret"):
        verify_signature("whsec_***", MSG_ID, TIMESTAMP, BODY, SIGNATURE, now=AT)
    # A bare base64 key works like the whsec_ form.
    verify_signature(SECRET.removeprefix("whsec_"), MSG_ID, TIMESTAMP, BODY, SIGNATURE, now=AT)


def test_parse_delivery() -> None:
    body = json.dumps({"id": "p1", "status": "processing"}).encode()
    headers = {
        "webhook-id": MSG_ID,
        "webhook-timestamp": TIMESTAMP,
        "webhook-signature": sign(SECRET, MSG_ID, TIMESTAMP, body),
    }
    assert parse_delivery(SECRET, headers, body, now=AT) == (MSG_ID, {"id": "p1", "status": "processing"})
    for not_a_prediction in (b"[1, 2]", b"{}", b"not json"):
        signed = {**headers, "webhook-signature": sign(SECRET, MSG_ID, TIMESTAMP, not_a_prediction)}
        with pytest.raises(WebhookRejectedError) as caught:
            parse_delivery(SECRET, signed, not_a_prediction, now=AT)
        assert not isinstance(caught.value, WebhookSignatureError)
    with pytest.raises(WebhookHeadersMissingError):
        parse_delivery(SECRET, {"webhook-id": MSG_ID}, body, now=AT)
