"""Turn job rows into the shapes the API returns.

:data:`SUMMARY_COLUMNS` and :func:`summary_fields` are the one mapping from a job's columns to
its list view (``JobSummary``). The list reads exactly those columns with a Core select and sends
:func:`summary_fields` dicts as they are; the detail view validates the same dict, with more
fields, into ``JobDetail``. The dicts hold the values pydantic would: serialised with
``pydantic_core.to_json`` they are byte for byte what ``JobSummary`` gives.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from types import SimpleNamespace
from typing import Any, cast

from sqlalchemy import Table

from cloudtuner.core.progress import JobProgress
from cloudtuner.core.states import JobStatus
from cloudtuner.db.tables import JobEventRow, JobRow
from cloudtuner.schemas.artifacts import Artifact
from cloudtuner.schemas.jobs import (
    ConfigSnapshot,
    JobDetail,
    JobEventResponse,
    JobProgressResponse,
)
from cloudtuner.services.publishing import publishing_view

JOBS = cast(Table, JobRow.__table__)
"""The ``jobs`` table itself: a select of its columns is plain Core, with no ORM loading step."""

SUMMARY_COLUMNS = (
    JOBS.c.id,
    JOBS.c.status,
    JOBS.c.provider,
    JOBS.c.provider_job_id,
    JOBS.c.owner_id,
    JOBS.c.config_name,
    JOBS.c.tracker_run_name,
    JOBS.c.hardware,
    JOBS.c.progress,
    JOBS.c.cost_usd,
    JOBS.c.error,
    JOBS.c.cancel_requested_at,
    JOBS.c.created_at,
    JOBS.c.updated_at,
    JOBS.c.started_at,
    JOBS.c.finished_at,
    JOBS.c.cost_final,
    JOBS.c.estimate_low_usd,
    JOBS.c.estimate_high_usd,
    JOBS.c.budget_usd,
)
"""The columns the list view is made of, in the order :func:`summary_fields` takes them."""

_SUMMARY_KEYS = tuple(column.key for column in SUMMARY_COLUMNS)


_STATUSES = {status.value: status for status in JobStatus}
_OPTIONAL_STR = (str, type(None))
_OPTIONAL_INT = (int, type(None))
_OPTIONAL_FLOAT = (float, type(None))


def _progress(stored: dict[str, Any] | None) -> dict[str, Any] | None:
    """Return the wire form of stored progress: ``JobProgressResponse``'s fields, in its order."""
    progress = JobProgress.from_dict(stored)
    if progress is None:
        return None
    stage, step, total_steps = progress.stage, progress.step, progress.total_steps
    loss, learning_rate = progress.loss, progress.learning_rate
    fields = {
        "stage": stage,
        "step": step,
        "total_steps": total_steps,
        "percent": progress.percent,
        "loss": loss,
        "learning_rate": learning_rate,
    }
    if (
        type(stage) in _OPTIONAL_STR
        and type(step) in _OPTIONAL_INT
        and type(total_steps) in _OPTIONAL_INT
        and type(loss) in _OPTIONAL_FLOAT
        and type(learning_rate) in _OPTIONAL_FLOAT
    ):
        return fields  # percent is a float or None by construction
    # Anything else (an int loss, a step stored as 3.0) gets pydantic's own coercion, or its error.
    return JobProgressResponse.model_validate(fields).model_dump()


def _duration(started_at: datetime | None, finished_at: datetime | None, now: datetime) -> float | None:
    if started_at is None:
        return None
    return round(max(0.0, ((finished_at or now) - started_at).total_seconds()), 3)


def summary_fields(values: Sequence[Any], now: datetime) -> dict[str, Any]:
    """Return the list view of a job from its :data:`SUMMARY_COLUMNS` values, in that order.

    The dict has ``JobSummary``'s fields in its order, with the values ``JobSummary`` holds
    (the status as its string); it is ready to be serialised as it is.

    Raises:
        ValueError: the stored status is not a :class:`JobStatus`.
    """
    (
        job_id,
        status,
        provider,
        provider_job_id,
        owner_id,
        config_name,
        tracker_run_name,
        hardware,
        progress,
        cost_usd,
        error,
        cancel_requested_at,
        created_at,
        updated_at,
        started_at,
        finished_at,
        cost_final,
        estimate_low_usd,
        estimate_high_usd,
        budget_usd,
    ) = values
    state = _STATUSES.get(status) or JobStatus(status)
    return {
        "job_id": job_id,
        "status": state.value,
        "provider": provider,
        "provider_job_id": provider_job_id,
        "owner_id": owner_id,
        "config_name": config_name,
        "tracker_run_name": tracker_run_name,
        "hardware": hardware,
        "progress": _progress(progress) if progress else None,
        "cost_usd": float(round(cost_usd, 6)),
        "error": error,
        "cancel_requested": cancel_requested_at is not None and not state.is_terminal,
        "created_at": created_at,
        "updated_at": updated_at,
        "started_at": started_at,
        "finished_at": finished_at,
        "duration_seconds": _duration(started_at, finished_at, now),
        "cost_final": bool(cost_final),
        "estimate_low_usd": estimate_low_usd,
        "estimate_high_usd": estimate_high_usd,
        "budget_usd": budget_usd,
    }


def _row_fields(job: JobRow | SimpleNamespace, now: datetime) -> dict[str, Any]:
    return summary_fields([getattr(job, key) for key in _SUMMARY_KEYS], now)


def job_detail(
    job: JobRow | SimpleNamespace, events: list[JobEventRow], now: datetime, artifacts: list[Artifact] | None = None
) -> JobDetail:
    """Return the full view of ``job`` with its timeline (and its delivered ``artifacts``).

    ``job`` is a row, or a namespace with a row's attributes (a job just built for inserting).
    """
    return JobDetail.model_validate(
        {
            **_row_fields(job, now),
            "config": job.config,
            "dataloader_config": job.dataloader_config,
            "config_snapshot": ConfigSnapshot.model_validate(job.config_snapshot),
            "publishing": publishing_view(job.publishing, job.id),
            "artifacts": artifacts or [],
            "upload_consent": job.upload_consent,
            "upload_summary": job.upload_summary,
            "idempotency_key": job.idempotency_key,
            "dispatch_attempts": job.dispatch_attempts,
            "price_per_second": job.price_per_second,
            "run_seconds": job.run_seconds,
            "cost_reserved_usd": job.cost_reserved_usd,
            "cost_estimate": job.cost_estimate,
            "events": [
                JobEventResponse(
                    from_status=JobStatus(event.from_status) if event.from_status else None,
                    to_status=JobStatus(event.to_status),
                    cause=event.cause,
                    detail=event.detail,
                    created_at=event.created_at,
                )
                for event in events
            ],
        }
    )
