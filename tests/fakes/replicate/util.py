"""Small shared helpers: identifiers, timestamps, problem+json replies and cursor pagination."""

from __future__ import annotations

import base64
import json
import secrets
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import urlencode

from starlette.responses import Response

T = TypeVar("T")

_RUN_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
_MSG_ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

JSON_TYPE = "application/json; charset=UTF-8"
PROBLEM_TYPE = "application/problem+json"

UNAUTHENTICATED = {
    "title": "Unauthenticated",
    "detail": "You did not pass a valid authentication token",
    "status": 401,
}
NOT_FOUND = {"detail": "The requested resource could not be found.", "status": 404}
INSUFFICIENT_CREDIT = {
    "title": "Insufficient credit",
    "detail": (
        "You have insufficient credit to run this model. Go to "
        "https://replicate.com/account/billing#billing to purchase credit. Once you purchase "
        "credit, please wait a few minutes before trying again."
    ),
    "status": 402,
}
THROTTLED = {"detail": "Request was throttled. Your rate limit resets in ~30s."}
INVALID_VERSION = {
    "title": "Invalid version or not permitted",
    "detail": ("The specified version does not exist (or perhaps you don't have permission to use it?)"),
    "status": 422,
}


def new_run_id() -> str:
    """A 26-character lowercase alphanumeric id like Replicate's prediction/training ids."""
    return "".join(secrets.choice(_RUN_ID_ALPHABET) for _ in range(26))


def new_file_id(style: str) -> str:
    """A file id: base64 of a UUID string (2024 capture) or a 26-char base32 id (OpenAPI).

    Base64 ids containing ``+`` or ``/`` are skipped so that every id is a single URL path segment.
    """
    if style == "base32":
        return base64.b32encode(secrets.token_bytes(16)).decode().lower().rstrip("=")[:26]
    while True:
        candidate = base64.b64encode(str(uuid.uuid4()).encode()).decode()
        if "+" not in candidate and "/" not in candidate:
            return candidate


def new_message_id() -> str:
    """A ``webhook-id`` in the ``msg_<27 alphanumerics>`` shape of the Standard Webhooks examples."""
    return "msg_" + "".join(secrets.choice(_MSG_ID_ALPHABET) for _ in range(27))


def new_version_id() -> str:
    """A random 64-hex version id."""
    return secrets.token_hex(32)


def iso(ts: float, *, millis: bool = False) -> str:
    """ISO 8601 UTC with ``Z``; microseconds by default, milliseconds when ``millis``."""
    text = datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
    return (text[:-3] if millis else text) + "Z"


def parse_iso(text: str) -> float:
    """Parse an ISO 8601 timestamp (``Z`` or offset; naive means UTC) into unix seconds."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON reply with the ``application/json; charset=UTF-8`` type of newer captures."""
    return Response(json.dumps(body), status_code=status, media_type=JSON_TYPE, headers=headers)


def problem(body: dict[str, Any], status: int | None = None, headers: dict[str, str] | None = None) -> Response:
    """An ``application/problem+json`` reply; the status defaults to ``body["status"]``."""
    code = status if status is not None else int(body["status"])
    return Response(json.dumps(body), status_code=code, media_type=PROBLEM_TYPE, headers=headers)


def validation_problem(errors: Sequence[tuple[str, str, str]], title: str = "Input validation failed") -> Response:
    """422 in the shape of section 13: ``errors`` are ``(type, field, description)`` triples."""
    lines = "".join(f"- {fld}: {desc}\n" if fld else f"- {desc}\n" for _, fld, desc in errors)
    body = {
        "title": title,
        "detail": lines,
        "status": 422,
        "invalid_fields": [{"type": t, "field": f, "description": d} for t, f, d in errors],
    }
    return problem(body)


def encode_cursor(created_at: float, seq: int, direction: str) -> str:
    """Opaque cursor: base64 of ``p=<created_at>&s=<seq>&d=<next|prev>``."""
    stamp = datetime.fromtimestamp(created_at, UTC).isoformat(sep=" ")
    raw = urlencode({"p": stamp, "s": seq, "d": direction})
    return base64.urlsafe_b64encode(raw.encode()).decode()


def decode_cursor(cursor: str) -> tuple[int, str] | None:
    """Return ``(seq, direction)`` of a cursor made by :func:`encode_cursor`, or None if invalid."""
    try:
        raw = base64.urlsafe_b64decode(cursor.encode()).decode()
        parts = dict(item.split("=", 1) for item in raw.split("&"))
        direction = parts["d"]
        if direction not in ("next", "prev"):
            return None
        return int(parts["s"]), direction
    except (ValueError, KeyError, UnicodeDecodeError):
        return None


def paginate(
    items: Sequence[T],
    *,
    seq_of: Callable[[T], int],
    created_of: Callable[[T], float],
    cursor: str | None,
    page_size: int,
    url: str,
) -> tuple[list[T], str | None, str | None] | None:
    """Cut one page out of ``items`` (already sorted newest first, i.e. by descending ``seq``).

    Returns ``(page, next_url, previous_url)`` with absolute URLs built from ``url`` plus
    ``?cursor=``, or None for an undecodable cursor.  ``next`` is None on the last page and
    ``previous`` is None on the first.
    """
    start = 0
    if cursor:
        decoded = decode_cursor(cursor)
        if decoded is None:
            return None
        seq, direction = decoded
        if direction == "next":
            start = next((i for i, it in enumerate(items) if seq_of(it) < seq), len(items))
        else:
            end = next((i for i, it in enumerate(items) if seq_of(it) <= seq), len(items))
            start = max(0, end - page_size)
    page = list(items[start : start + page_size])
    next_url = prev_url = None
    if page and start + page_size < len(items):
        last = page[-1]
        next_url = f"{url}?cursor={encode_cursor(created_of(last), seq_of(last), 'next')}"
    if page and start > 0:
        first = page[0]
        prev_url = f"{url}?cursor={encode_cursor(created_of(first), seq_of(first), 'prev')}"
    return page, next_url, prev_url
