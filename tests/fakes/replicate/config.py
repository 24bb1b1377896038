"""Configuration of the fake Replicate server.

Every behaviour that the protocol reference marks as UNCONFIRMED (section 16) is a field here, so a
test can pick the variant it wants to exercise.  A :class:`FakeConfig` is a plain mutable dataclass;
the server reads it on every request, so changes take effect immediately.  Over HTTP it is read with
``GET /_fake/config`` and changed with ``PATCH /_fake/config`` (see :func:`apply_config_patch`).
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

DEFAULT_TOKEN = "r8_fakeReplicateTestToken0000000000000000"
"""Token accepted by a fake built with the default configuration (40 characters, ``r8_`` prefix)."""

DEFAULT_WEBHOOK_SECRET = "whsec_ZmFrZS1yZXBsaWNhdGUtd2ViaG9vay1rZXk="
"""Signing secret served at ``/v1/webhooks/default/secret`` unless configured otherwise."""

ALL_WEBHOOK_EVENTS: tuple[str, ...] = ("start", "output", "logs", "completed")
"""The four values Replicate accepts in ``webhook_events_filter``."""

DEFAULT_HARDWARE: tuple[tuple[str, str], ...] = (
    ("cpu", "CPU"),
    ("gpu-t4", "Nvidia T4 GPU"),
    ("gpu-a40-small", "Nvidia A40 GPU"),
    ("gpu-a40-large", "Nvidia A40 (Large) GPU"),
    ("gpu-l40s", "Nvidia L40S GPU"),
    ("gpu-a100-large", "Nvidia A100 (80GB) GPU"),
    ("gpu-h100", "Nvidia H100 GPU"),
)
"""The recorded 2023 four-SKU list plus the SKUs of the pricing page (reference section 7)."""


@dataclass
class FakeConfig:
    """Knobs of the fake.  Field docs state the default's provenance where it is a guess."""

    tokens: set[str] = field(default_factory=lambda: {DEFAULT_TOKEN})
    """API tokens accepted with ``Bearer`` or ``Token``; anything else gets the recorded 401."""

    username: str = "cloudtuner-test"
    account_type: Literal["user", "organization"] = "user"
    account_name: str = "Cloudtuner Test"
    github_url: str | None = None

    webhook_secret: str = DEFAULT_WEBHOOK_SECRET
    """``whsec_<base64 key>``; the key is the base64-decoded part after ``whsec_``."""

    file_size_limit: int = 100 * 1024 * 1024
    """Uploads strictly larger than this many bytes get 413 (100 MB vs 100 MiB is UNCONFIRMED)."""

    file_retention_seconds: float = 24 * 3600.0
    """``expires_at - created_at`` of uploaded files (24 h recorded, 1 h in the OpenAPI example)."""

    file_id_style: Literal["base64-uuid", "base32"] = "base64-uuid"
    """2024 capture: base64 of a UUID string; OpenAPI example: a 26-char base32 id."""

    page_size_runs: int = 100
    """Predictions and trainings per page (documented: 100)."""

    page_size_other: int = 100
    """Files, models and versions per page (UNCONFIRMED)."""

    default_webhook_events: tuple[str, ...] = ("output", "completed")
    """Events sent when a create call has no ``webhook_events_filter`` (UNCONFIRMED)."""

    webhook_throttle_seconds: float = 0.5
    """Minimum spacing of ``logs``/``output`` deliveries per run (documented: 500 ms)."""

    start_event_status: Literal["starting", "processing"] = "processing"
    """Whether the ``start`` webhook goes out at creation or when the run starts processing."""

    webhook_retry_delays: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 28.5)
    """Delays between attempts of the terminal delivery; last retry about 60 s after completion."""

    webhook_timeout_seconds: float = 10.0
    """How long the fake waits for a webhook receiver's reply."""

    webhook_timestamp_offset: float = 0.0
    """Added to the wall clock for ``webhook-timestamp`` (lets tests produce stale signatures)."""

    webhook_user_agent: str = "fake-replicate-webhooks/1.0"
    non_loopback_webhooks: Literal["reject", "record"] = "reject"
    """``reject``: create calls with a non-loopback webhook get 422.  ``record``: the run is created
    and every delivery is recorded as ``refused`` without any network traffic."""

    ratelimit_headers: bool = True
    """Send ``ratelimit-remaining``/``ratelimit-reset`` as the 2023-24 captures do (UNCONFIRMED now)."""

    validate_input: bool = True
    """Check ``input`` against the version's Cog schema (required, type, enum, minimum/maximum)."""

    reject_unknown_input: bool = False
    """Reject ``input`` keys the schema does not declare (UNCONFIRMED; SimpleTuner sends two)."""

    check_input_files: bool = True
    """A run whose ``input.images`` names a file of this fake that does not exist fails, as the
    real worker would when the download fails."""

    cancel_after_minimum: float = 5.0
    """Smallest accepted ``Cancel-After`` deadline in seconds (documented minimum 5 s)."""

    starting_seconds: float | None = 0.5
    """Default time a run stays ``starting``; None keeps it there until a control call."""

    processing_seconds: float = 3.0
    """Default time a run stays ``processing`` before its scripted outcome."""

    log_steps: int = 10
    """Default number of progress lines with ``step/total`` and ``step_loss`` per run."""

    total_steps: int = 100
    """Default ``total`` of the progress lines when the input names no ``max_train_steps``."""

    tick_seconds: float = 0.02
    """Interval of the background task that advances runs and dispatches webhooks."""

    hardware: tuple[tuple[str, str], ...] = DEFAULT_HARDWARE

    hf_endpoint: str | None = None
    """The (fake) Hugging Face Hub a trainer run pushes to when its inputs name ``hub_model_id``;
    None skips the push (the fake never contacts the real Hub). Loopback URLs only."""

    delivery_checkpoint_bytes: int = 1024
    """Size of the checkpoint a trainer run delivers; over 5 MiB it goes to S3 as a multipart upload."""

    status_ongoing_incidents: list[dict[str, Any]] = field(default_factory=list)
    """``ongoing_incidents`` of the status summary at ``/api/v1/summary`` (incident.io widget shape)."""

    status_in_progress_maintenances: list[dict[str, Any]] = field(default_factory=list)
    status_scheduled_maintenances: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view (sets become sorted lists, tuples become lists)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, set):
                value = sorted(value)
            elif isinstance(value, tuple):
                value = [list(v) if isinstance(v, tuple) else v for v in value]
            out[f.name] = value
        return out

    def copy(self) -> FakeConfig:
        """An independent deep copy."""
        return copy.deepcopy(self)


_SET_FIELDS = {"tokens"}
_TUPLE_FIELDS = {"default_webhook_events", "webhook_retry_delays"}


def _check_scalar(key: str, current: Any, new: Any) -> None:
    """Reject a value whose type does not fit a scalar field (None is allowed where it may be)."""
    if new is None or current is None or not isinstance(current, bool | int | float | str):
        return
    if isinstance(current, bool):
        ok = isinstance(new, bool)
    elif isinstance(current, int | float):
        ok = isinstance(new, int | float) and not isinstance(new, bool)
    else:
        ok = isinstance(new, str)
    if not ok:
        raise ValueError(f"config field {key} expects {type(current).__name__}, got {type(new).__name__}")


def apply_config_patch(config: FakeConfig, patch: dict[str, Any]) -> FakeConfig:
    """Set the fields named in ``patch`` on ``config`` and return it.

    Lists are converted to the field's container type.  Raises ``ValueError`` for an unknown
    field, a scalar of the wrong type or a webhook event outside :data:`ALL_WEBHOOK_EVENTS`;
    nothing is changed then.
    """
    names = {f.name for f in dataclasses.fields(config)}
    unknown = sorted(set(patch) - names)
    if unknown:
        raise ValueError(f"unknown config field(s): {', '.join(unknown)}")
    events = patch.get("default_webhook_events")
    if events is not None and not set(events) <= set(ALL_WEBHOOK_EVENTS):
        raise ValueError(f"default_webhook_events must be drawn from {list(ALL_WEBHOOK_EVENTS)}")
    for key, raw in patch.items():
        _check_scalar(key, getattr(config, key), raw)
    for key, raw in patch.items():
        value: Any = raw
        if key in _SET_FIELDS:
            value = set(raw)
        elif key in _TUPLE_FIELDS:
            value = tuple(raw)
        elif key == "hardware":
            value = tuple((str(sku), str(name)) for sku, name in raw)
        setattr(config, key, value)
    return config
