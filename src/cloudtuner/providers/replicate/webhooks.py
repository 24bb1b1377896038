"""Replicate webhooks: signature verification and payload mapping. Pure (no I/O).

Replicate signs webhooks with the Standard Webhooks scheme (reference section 8.3):

* the secret is ``whsec_<base64 key>`` (from ``GET /v1/webhooks/default/secret``; see
  :meth:`ReplicateProvider.webhook_secret`);
* the signed content is ``"{webhook-id}.{webhook-timestamp}.{raw body}"``, the exact bytes received;
* ``webhook-signature`` holds one or more space-separated ``v1,<base64 HMAC-SHA256>`` entries; the
  call is genuine if any ``v1`` entry matches (compared in constant time);
* ``webhook-timestamp`` (unix seconds) must be within ``tolerance`` of ``now``, either way.

Replay protection (remembering ``webhook-id`` values) is the receiver's job, not this module's.
:func:`parse_delivery` checks a whole delivery and returns its id and prediction object;
:func:`prediction_to_info` maps that object exactly as status reads do. The errors derive from
:class:`cloudtuner.core.errors.WebhookRejectedError` (HTTP 401), each with its own ``code`` and
a ``reason``.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, ClassVar

from cloudtuner.core.errors import WebhookRejectedError
from cloudtuner.providers.replicate.mapping import prediction_to_info

__all__ = [
    "DEFAULT_TOLERANCE",
    "WebhookHeadersMissingError",
    "WebhookRejection",
    "WebhookSignatureError",
    "WebhookSignatureMismatchError",
    "WebhookTimestampError",
    "decode_secret",
    "parse_delivery",
    "prediction_to_info",
    "sign",
    "verify_signature",
]

DEFAULT_TOLERANCE = timedelta(minutes=5)
SECRET_PREFIX = "whsec_"  # noqa: S105 - the format prefix, not a secret


class WebhookRejection(StrEnum):
    """Why a webhook was refused."""

    MISSING_HEADERS = "missing_headers"
    STALE_TIMESTAMP = "stale_timestamp"
    BAD_SIGNATURE = "bad_signature"


class WebhookSignatureError(WebhookRejectedError):
    """The webhook's signature could not be verified."""

    code = "webhook_signature_invalid"
    reason: ClassVar[WebhookRejection] = WebhookRejection.BAD_SIGNATURE


class WebhookHeadersMissingError(WebhookSignatureError):
    """The webhook lacks the webhook-id, webhook-timestamp or webhook-signature header."""

    code = "webhook_headers_missing"
    reason = WebhookRejection.MISSING_HEADERS


class WebhookTimestampError(WebhookSignatureError):
    """The webhook's timestamp is unreadable or too far from the current time."""

    code = "webhook_timestamp_stale"
    reason = WebhookRejection.STALE_TIMESTAMP


class WebhookSignatureMismatchError(WebhookSignatureError):
    """No signature of the webhook matches its content."""

    code = "webhook_signature_mismatch"
    reason = WebhookRejection.BAD_SIGNATURE


@functools.lru_cache(maxsize=8)
def decode_secret(secret: str) -> bytes:
    """Return the signing key of a ``whsec_<base64>`` secret (a bare base64 key is accepted too).

    Remembered for the last few secrets (every delivery is checked with the same one).

    Raises:
        ValueError: the secret is empty or not base64 (a configuration problem, not the caller's).
    """
    encoded = secret.strip()
    if encoded.startswith(SECRET_PREFIX):
        encoded = encoded[len(SECRET_PREFIX) :]
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("the webhook secret is not a whsec_<base64> value") from exc
    if not key:
        raise ValueError("the webhook secret is empty")
    return key


def sign(secret: str, webhook_id: str, timestamp: str, body: bytes) -> str:
    """Return the ``v1,<base64>`` signature of a message (for tests and for re-sending).

    Raises:
        ValueError: the secret is malformed.
    """
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(decode_secret(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify_signature(
    secret: str,
    webhook_id: str,
    timestamp: str,
    body: bytes,
    signature_header: str,
    *,
    now: datetime,
    tolerance: timedelta = DEFAULT_TOLERANCE,
) -> None:
    """Check that a webhook was signed with ``secret`` and is fresh; return None if so.

    ``webhook_id``, ``timestamp`` and ``signature_header`` are the raw header values (empty when
    absent), ``body`` the exact bytes received, ``now`` the current time (aware).

    Raises:
        WebhookHeadersMissingError: a header is missing or empty.
        WebhookTimestampError: the timestamp is not an integer or is more than ``tolerance`` away
            from ``now``.
        WebhookSignatureMismatchError: no ``v1`` signature matches.
        ValueError: ``secret`` is malformed (a server configuration problem).
    """
    if not webhook_id or not timestamp or not signature_header:
        raise WebhookHeadersMissingError()
    key = decode_secret(secret)
    try:
        sent_at = datetime.fromtimestamp(int(timestamp.strip()), UTC)
    except (ValueError, OverflowError, OSError) as exc:
        raise WebhookTimestampError("The webhook's timestamp is not a number of seconds.") from exc
    current = now if now.tzinfo is not None else now.replace(tzinfo=UTC)
    if abs(current - sent_at) > tolerance:
        raise WebhookTimestampError(
            f"The webhook's timestamp is more than {int(tolerance.total_seconds())} s from this server's clock."
        )
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    expected = hmac.new(key, signed, hashlib.sha256).digest()
    for entry in signature_header.split():
        version, _, encoded = entry.partition(",")
        if version != "v1" or not encoded:
            continue
        try:
            candidate = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        if hmac.compare_digest(candidate, expected):
            return
    raise WebhookSignatureMismatchError()


def parse_delivery(
    secret: str, headers: Mapping[str, str], body: bytes, *, now: datetime, tolerance: timedelta = DEFAULT_TOLERANCE
) -> tuple[str, dict[str, Any]]:
    """Verify a delivery and return its ``webhook-id`` and the prediction object it carries.

    ``headers`` have lowercase names.

    Raises:
        WebhookHeadersMissingError, WebhookTimestampError, WebhookSignatureMismatchError: as
            :func:`verify_signature`.
        WebhookRejectedError: the signed body is not a prediction object.
        ValueError: ``secret`` is malformed.
    """
    webhook_id = headers.get("webhook-id", "")
    verify_signature(
        secret,
        webhook_id,
        headers.get("webhook-timestamp", ""),
        body,
        headers.get("webhook-signature", ""),
        now=now,
        tolerance=tolerance,
    )
    try:
        payload = json.loads(body)
    except ValueError as exc:
        raise WebhookRejectedError("The webhook's body is not JSON.") from exc
    if not isinstance(payload, dict) or not isinstance(payload.get("id"), str) or not payload["id"]:
        raise WebhookRejectedError("The webhook does not describe a Replicate prediction.")
    return webhook_id, payload
