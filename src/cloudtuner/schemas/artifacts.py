"""What crosses the wire for a job's artifacts: the files it delivered, and its delivery's state."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field

from cloudtuner.schemas.publishing import PublishingDestination


class ArtifactKind(StrEnum):
    """What a delivered file is, judged from its path."""

    WEIGHTS = "weights"
    CHECKPOINT = "checkpoint"
    SAMPLE = "sample"
    MODEL_CARD = "model_card"
    CONFIG = "config"
    OTHER = "other"


class DeliveryState(StrEnum):
    """Whether what a job delivered has been collected into its artifacts."""

    PENDING = "pending"
    """The job has not ended yet, or its destination is about to be listed."""
    DONE = "done"
    FAILED = "failed"


class Artifact(BaseModel):
    """One file delivered for a job."""

    id: int
    job_id: str
    destination: PublishingDestination
    kind: ArtifactKind
    path: str = Field(description="Where the file is inside the job's delivery folder or repository.")
    location: str = Field(description="Where the file is: s3://bucket/key or hf://owner/name/path.")
    size_bytes: int
    sha256: str | None = Field(default=None, description="SHA-256 (hex) of the file, when the destination tells it.")
    etag: str | None = None
    content_type: str | None = None
    delivered_at: datetime
    download_url: str | None = Field(
        default=None, description="Path on this server that streams the file (files on this server only)."
    )
    web_url: str | None = Field(default=None, description="Where to see the file (the Hub, a public bucket URL).")


class DeliveryStatus(BaseModel):
    """Where a job delivers and whether its artifacts have been collected."""

    destination: str = Field(description="local, s3, huggingface, or auto (local when a public URL was set).")
    state: DeliveryState
    location: str | None = Field(default=None, description="The folder or repository the job delivers to.")
    reported: str | None = Field(default=None, description="What the provider said the run produced.")
    error: str | None = None
    attempts: int = 0
    finished_at: datetime | None = None


class ArtifactListResponse(BaseModel):
    """The reply to GET /api/cloud/jobs/{id}/artifacts."""

    job_id: str
    artifacts: list[Artifact]
    total_bytes: int = 0
    delivery: DeliveryStatus | None = None
