"""What the live feed of job changes sends (``GET /api/cloud/events``, server-sent events).

The feed is a stream of SSE messages. Each has an ``event:`` name, an ``id:`` (the feed cursor:
send it back as ``Last-Event-ID``, or as ``?after=``, to resume without losing a change) and one
line of JSON ``data:``:

* ``ready``: sent first; :class:`FeedReady`.
* ``status``: a job changed state; :class:`JobStatusEvent`.
* ``update``: an active job's progress, cost, logs or error changed; :class:`JobUpdateEvent`.

Comment lines (``: ping``) keep idle connections open through proxies.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from cloudtuner.core.states import JobStatus


class FeedReady(BaseModel):
    """The first message: where the feed starts."""

    cursor: int = Field(description="The newest job event id at the start; later changes follow.")
    poll_seconds: float = Field(description="How often the server reads the job store for changes.")


class JobStatusEvent(BaseModel):
    """A job changed state (one row of its timeline), with the job as the list shows it now."""

    event_id: int
    job_id: str
    from_status: JobStatus | None
    to_status: JobStatus
    cause: str
    detail: str | None = None
    created_at: datetime
    job: dict[str, Any] | None = Field(
        default=None, description="The job's list view (JobSummary) now; null when the job was deleted since."
    )


class JobUpdateEvent(BaseModel):
    """An active or just-finished job changed without changing state: progress, cost, logs, error."""

    job_id: str
    log_length: int = Field(description="Characters of log stored so far; fetch logs from your offset when it grows.")
    job: dict[str, Any] = Field(description="The job's list view (JobSummary).")
