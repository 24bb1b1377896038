"""Turn job rows into the shapes the API returns."""

from __future__ import annotations

from datetime import datetime

from cloudtuner.core.progress import JobProgress
from cloudtuner.core.states import JobStatus
from cloudtuner.db.tables import JobEventRow, JobRow
from cloudtuner.schemas.jobs import (
    ConfigSnapshot,
    JobDetail,
    JobEventResponse,
    JobProgressResponse,
    JobSummary,
)


def _progress(job: JobRow) -> JobProgressResponse | None:
    progress = JobProgress.from_dict(job.progress)
    if progress is None:
        return None
    return JobProgressResponse(
        stage=progress.stage,
        step=progress.step,
        total_steps=progress.total_steps,
        percent=progress.percent,
        loss=progress.loss,
        learning_rate=progress.learning_rate,
    )


def _duration(job: JobRow, now: datetime) -> float | None:
    if job.started_at is None:
        return None
    end = job.finished_at or now
    return round(max(0.0, (end - job.started_at).total_seconds()), 3)


def _summary_fields(job: JobRow, now: datetime) -> dict[str, object]:
    return {
        "job_id": job.id,
        "status": JobStatus(job.status),
        "provider": job.provider,
        "provider_job_id": job.provider_job_id,
        "owner_id": job.owner_id,
        "config_name": job.config_name,
        "tracker_run_name": job.tracker_run_name,
        "hardware": job.hardware,
        "progress": _progress(job),
        "cost_usd": round(job.cost_usd, 6),
        "error": job.error,
        "cancel_requested": job.cancel_requested_at is not None and not JobStatus(job.status).is_terminal,
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "duration_seconds": _duration(job, now),
    }


def job_summary(job: JobRow, now: datetime) -> JobSummary:
    """Return the list view of ``job``."""
    return JobSummary.model_validate(_summary_fields(job, now))


def job_detail(job: JobRow, events: list[JobEventRow], now: datetime) -> JobDetail:
    """Return the full view of ``job`` with its timeline."""
    return JobDetail.model_validate(
        {
            **_summary_fields(job, now),
            "config": job.config,
            "dataloader_config": job.dataloader_config,
            "config_snapshot": ConfigSnapshot.model_validate(job.config_snapshot),
            "publishing": job.publishing,
            "upload_consent": job.upload_consent,
            "upload_summary": job.upload_summary,
            "idempotency_key": job.idempotency_key,
            "dispatch_attempts": job.dispatch_attempts,
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
