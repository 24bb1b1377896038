"""Validation of create-call bodies and of ``input`` against a version's Cog schema.

Errors are ``(type, field, description)`` triples rendered by :func:`util.validation_problem` into
the 422 shape of reference section 13 (``detail`` lines ``- <field>: <message>``, plus
``invalid_fields``).  The messages imitate the quoted ones; exact wording beyond those is a guess.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from .config import ALL_WEBHOOK_EVENTS, FakeConfig
from .webhooks import is_loopback_url

Error = tuple[str, str, str]

PREDICTION_KEYS = frozenset({"version", "input", "webhook", "webhook_events_filter", "stream", "webhook_completed"})
MODEL_PREDICTION_KEYS = PREDICTION_KEYS - {"version"}
TRAINING_KEYS = frozenset({"destination", "input", "webhook", "webhook_events_filter", "webhook_completed"})

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
}


def _type_name(value: Any) -> str:
    names = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "object"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def check_body(body: dict[str, Any], allowed: frozenset[str], required: tuple[str, ...]) -> list[Error]:
    """Required and unknown top-level keys (the request schemas forbid additional properties)."""
    errors: list[Error] = [("required", "", f"{key} is required") for key in required if key not in body]
    errors += [
        ("additional_property_not_allowed", "", f"Additional property {key} is not allowed")
        for key in sorted(set(body) - allowed)
    ]
    if "input" in body and not isinstance(body["input"], dict):
        errors.append(("invalid_type", "input", f"Invalid type. Expected: object, given: {_type_name(body['input'])}"))
    return errors


def check_webhook(body: dict[str, Any], config: FakeConfig) -> list[Error]:
    """``webhook``/``webhook_completed`` must be http(s) URLs (loopback unless
    ``non_loopback_webhooks="record"``) and ``webhook_events_filter`` a list of the four event names."""
    errors: list[Error] = []
    for key in ("webhook", "webhook_completed"):
        url = body.get(key)
        if url is None:
            continue
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
            errors.append(("format", key, "Does not match format 'uri'"))
        elif config.non_loopback_webhooks == "reject" and not is_loopback_url(url):
            errors.append(("format", key, "fake Replicate only delivers webhooks to loopback addresses"))
    events = body.get("webhook_events_filter")
    if events is not None:
        if not isinstance(events, list):
            errors.append(("invalid_type", "webhook_events_filter", "Invalid type. Expected: array"))
        else:
            allowed = ", ".join(f'"{e}"' for e in ALL_WEBHOOK_EVENTS)
            errors += [
                (
                    "enum",
                    f"webhook_events_filter.{index}",
                    f"webhook_events_filter.{index} must be one of the following: {allowed}",
                )
                for index, event in enumerate(events)
                if event not in ALL_WEBHOOK_EVENTS
            ]
    return errors


def _resolve(prop: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    """Merge ``allOf`` ``$ref`` targets (Cog's way of attaching enums) into the property."""
    merged = {k: v for k, v in prop.items() if k != "allOf"}
    for part in prop.get("allOf", []):
        ref = part.get("$ref", "") if isinstance(part, dict) else ""
        target = components.get(ref.rsplit("/", 1)[-1]) if ref else part
        if isinstance(target, dict):
            merged = {**target, **merged}
    return merged


def _looks_like_uri(value: str) -> bool:
    if value.startswith("data:"):
        return True
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def check_input(
    run_input: dict[str, Any], schema: dict[str, Any], components: dict[str, Any], *, reject_unknown: bool
) -> list[Error]:
    """Validate ``run_input`` against a Cog ``Input`` object schema (required, type, enum,
    minimum/maximum, ``uri`` format; optionally unknown keys)."""
    errors: list[Error] = []
    properties: dict[str, Any] = schema.get("properties", {})
    for name in schema.get("required", []):
        if name not in run_input:
            errors.append(("required", "input", f"{name} is required"))
    for name, value in run_input.items():
        raw = properties.get(name)
        if raw is None:
            if reject_unknown:
                errors.append(
                    ("additional_property_not_allowed", "input", f"Additional property {name} is not allowed")
                )
            continue
        prop = _resolve(raw, components)
        field = f"input.{name}"
        if value is None and "default" in prop:
            continue
        expected = prop.get("type")
        if isinstance(expected, str) and expected in _JSON_TYPES:
            ok = isinstance(value, _JSON_TYPES[expected]) and not (expected != "boolean" and isinstance(value, bool))
            if not ok:
                errors.append(
                    ("invalid_type", field, f"Invalid type. Expected: {expected}, given: {_type_name(value)}")
                )
                continue
        if "enum" in prop and value not in prop["enum"]:
            choices = ", ".join(f'"{c}"' if isinstance(c, str) else str(c) for c in prop["enum"])
            errors.append(("enum", field, f"{field} must be one of the following: {choices}"))
        if isinstance(value, int | float) and not isinstance(value, bool):
            if "minimum" in prop and value < prop["minimum"]:
                errors.append(("number_gte", field, f"Must be greater than or equal to {prop['minimum']}"))
            if "maximum" in prop and value > prop["maximum"]:
                errors.append(("number_lte", field, f"Must be less than or equal to {prop['maximum']}"))
        if prop.get("format") == "uri" and isinstance(value, str) and not _looks_like_uri(value):
            errors.append(("format", field, "Does not match format 'uri'"))
    return errors


def parse_duration(text: str) -> float | None:
    """Seconds of a ``Cancel-After`` value: ``90``, ``45s``, ``5m``, ``1h30m45s``; None if invalid."""
    text = text.strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    total, number = 0.0, ""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0}
    for char in text:
        if char.isdigit() or char == ".":
            number += char
        elif char in units and number:
            total += float(number) * units[char]
            number = ""
        else:
            return None
    return None if number else total
