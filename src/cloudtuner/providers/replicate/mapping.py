"""From Replicate's prediction objects to cloudtuner's :class:`CloudJobInfo`.

One mapping serves status reads, listings and webhook payloads (the webhook body is the same
object as ``GET /v1/predictions/{id}``):

* status: ``starting`` → STARTING, ``processing`` → RUNNING, ``succeeded`` → COMPLETED,
  ``failed`` → FAILED, ``canceled``/``aborted`` → CANCELLED; anything else → STARTING (it never
  moves a job forward on a guess).
* cost: ``metrics.predict_time`` × the price per second of the profile whose trainer model ran;
  while running with no figure yet, seconds since ``started_at`` × price; 0 while starting; None for
  a model no profile knows.
* reference: the cloudtuner job id, read from the webhook URL's ``job_id`` query parameter (when
  Replicate shows the webhook) or from a ``--tracker_run_name`` of ``cloudtuner-<job id>`` in
  ``input.config_json``.
* progress: parsed from the object's ``logs`` with :func:`cloudtuner.core.trainer_logs.parse_progress`.

Nothing here does I/O.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cloudtuner.core.ids import is_sortable_id
from cloudtuner.core.trainer_logs import parse_progress
from cloudtuner.providers.base import CloudJobInfo, CloudJobStatus
from cloudtuner.providers.replicate.hardware import HardwareCatalog

RUN_NAME_PREFIX = "cloudtuner-"
RUN_NAME_KEYS = ("--tracker_run_name", "tracker_run_name")
WEBHOOK_JOB_PARAM = "job_id"

STATUS_MAP: dict[str, CloudJobStatus] = {
    "starting": CloudJobStatus.STARTING,
    "processing": CloudJobStatus.RUNNING,
    "succeeded": CloudJobStatus.COMPLETED,
    "failed": CloudJobStatus.FAILED,
    "canceled": CloudJobStatus.CANCELLED,
    "aborted": CloudJobStatus.CANCELLED,
}

_DEFAULT_CATALOG = HardwareCatalog()
_FRACTION = re.compile(r"(\.\d{6})\d+")


def map_status(value: Any) -> CloudJobStatus:
    """Return the run state for a Replicate ``status`` string (unknown values: STARTING)."""
    return STATUS_MAP.get(str(value), CloudJobStatus.STARTING)


def parse_time(value: Any) -> datetime | None:
    """Parse a Replicate timestamp (``Z`` or offset, up to nanoseconds) into an aware UTC datetime."""
    if not isinstance(value, str) or not value:
        return None
    text = _FRACTION.sub(r"\1", value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def run_name_for(job_id: str) -> str:
    """Return the tracker run name cloudtuner gives a job's run when the job names none."""
    return f"{RUN_NAME_PREFIX}{job_id}"


def webhook_job_id(url: Any) -> str | None:
    """Return the ``job_id`` query parameter of a webhook URL, or None."""
    if not isinstance(url, str) or not url:
        return None
    try:
        values = parse_qs(urlsplit(url).query).get(WEBHOOK_JOB_PARAM)
    except ValueError:
        return None
    return values[0] if values and values[0] else None


def run_config(payload: dict[str, Any]) -> dict[str, Any] | None:
    """Return the training config the run was given (``input.config_json`` parsed), or None."""
    run_input = payload.get("input")
    if not isinstance(run_input, dict):
        return None
    text = run_input.get("config_json")
    if not isinstance(text, str):
        return None
    try:
        config = json.loads(text)
    except ValueError:
        return None
    return config if isinstance(config, dict) else None


def config_run_name(config: dict[str, Any] | None) -> str | None:
    """Return the ``--tracker_run_name`` of a config, or None."""
    if not config:
        return None
    for key in RUN_NAME_KEYS:
        value = config.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def reference_of(payload: dict[str, Any]) -> str | None:
    """Return the cloudtuner job id a prediction was made for, if the prediction shows it.

    The webhook URL's ``job_id`` wins; otherwise a run name ``cloudtuner-<id>`` whose ``<id>``
    has the shape of a cloudtuner job id.
    """
    from_webhook = webhook_job_id(payload.get("webhook"))
    if from_webhook is not None:
        return from_webhook
    name = config_run_name(run_config(payload))
    if name is not None and name.startswith(RUN_NAME_PREFIX):
        candidate = name[len(RUN_NAME_PREFIX) :]
        if is_sortable_id(candidate):
            return candidate
    return None


def _dataloader(payload: dict[str, Any]) -> list[Any] | None:
    run_input = payload.get("input")
    text = run_input.get("dataloader_json") if isinstance(run_input, dict) else None
    if not isinstance(text, str):
        return None
    try:
        loader = json.loads(text)
    except ValueError:
        return None
    return loader if isinstance(loader, list) else None


def _cost(
    payload: dict[str, Any], status: CloudJobStatus, price: float | None, started: datetime | None, now: datetime
) -> float | None:
    if price is None:
        return None
    metrics = payload.get("metrics")
    predict_time = metrics.get("predict_time") if isinstance(metrics, dict) else None
    if isinstance(predict_time, int | float) and not isinstance(predict_time, bool) and predict_time >= 0:
        return float(predict_time) * price
    if status is CloudJobStatus.RUNNING and started is not None:
        return max(0.0, (now - started).total_seconds()) * price
    if status is CloudJobStatus.STARTING:
        return 0.0
    return None


def _error_text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else json.dumps(value)


def prediction_to_info(
    payload: dict[str, Any],
    *,
    catalog: HardwareCatalog | None = None,
    now: datetime | None = None,
    reference: str | None = None,
    inputs: bool = True,
) -> CloudJobInfo:
    """Return the :class:`CloudJobInfo` of a Replicate prediction object (a GET reply or a webhook body).

    ``catalog`` prices the run (default: the built-in profiles); ``now`` is used for the cost of a
    run still going (default: the current time); ``reference`` is used when the object itself
    does not show one. ``metadata`` holds the trainer model and version and, when readable and
    ``inputs`` is true, the run's ``config``, ``dataloader_config`` and ``tracker_run_name`` (never
    secret inputs): only importing an unknown run needs those, and decoding them costs more than
    the rest of the mapping, so callers about a known job's run pass ``inputs=False``.

    Raises:
        ValueError: ``payload`` has no prediction ``id``.
    """
    prediction_id = payload.get("id")
    if not isinstance(prediction_id, str) or not prediction_id:
        raise ValueError("a Replicate prediction object needs an id")
    catalog = catalog or _DEFAULT_CATALOG
    status = map_status(payload.get("status"))
    model = payload.get("model") if isinstance(payload.get("model"), str) else None
    profile = catalog.for_model(model)
    started = parse_time(payload.get("started_at"))
    logs = payload.get("logs")
    metadata: dict[str, Any] = {
        "model": model,
        "version": payload.get("version"),
        "replicate_status": payload.get("status"),
    }
    if inputs:
        config = run_config(payload)
        if config is not None:
            metadata["config"] = config
            metadata["tracker_run_name"] = config_run_name(config)
        loader = _dataloader(payload)
        if loader is not None:
            metadata["dataloader_config"] = loader
    output = payload.get("output")
    return CloudJobInfo(
        provider_job_id=prediction_id,
        status=status,
        reference=reference_of(payload) or reference,
        progress=parse_progress(logs) if isinstance(logs, str) else None,
        cost_usd=_cost(
            payload, status, profile.price_per_second if profile else None, started, now or datetime.now(UTC)
        ),
        hardware=profile.sku if profile else None,
        error=_error_text(payload.get("error")),
        created_at=parse_time(payload.get("created_at")),
        started_at=started,
        finished_at=parse_time(payload.get("completed_at")),
        output={"output": output} if output is not None else None,
        metadata=metadata,
    )
