"""What crosses the wire for the job queue: its limits, its order and a job's place in it."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class QueueLimits(BaseModel):
    """How many jobs may run at once. ``None`` means no limit."""

    model_config = ConfigDict(extra="forbid")

    max_concurrent: int | None = Field(default=None, ge=1, description="Jobs running at once, all providers.")
    max_concurrent_per_user: int | None = Field(default=None, ge=1, description="Jobs running at once per user.")
    max_concurrent_per_provider: int | None = Field(
        default=None, ge=1, description="Jobs running at once per provider (unless the provider has its own limit)."
    )
    provider_limits: dict[str, int] = Field(
        default_factory=dict, description='Jobs running at once for named providers, e.g. {"replicate": 4}.'
    )
    max_queued_per_user: int | None = Field(
        default=None, ge=1, description="Jobs one user may have waiting; more submissions are refused."
    )
    aging_seconds: float = Field(
        default=600.0,
        gt=0,
        description="A waiting job gains one priority step per this many seconds, so none waits forever.",
    )

    @property
    def limits_running(self) -> bool:
        """Return True if any limit on running jobs is set."""
        return bool(self.max_concurrent or self.max_concurrent_per_user or self.max_concurrent_per_provider) or bool(
            self.provider_limits
        )


class QueueLimitsUpdate(BaseModel):
    """Fields to change; a field sent as null removes that limit."""

    model_config = ConfigDict(extra="forbid")

    max_concurrent: int | None = Field(default=None, ge=1)
    max_concurrent_per_user: int | None = Field(default=None, ge=1)
    max_concurrent_per_provider: int | None = Field(default=None, ge=1)
    provider_limits: dict[str, int] | None = None
    max_queued_per_user: int | None = Field(default=None, ge=1)
    aging_seconds: float | None = Field(default=None, gt=0)


class QueuedJob(BaseModel):
    """A waiting job and its place in the queue."""

    job_id: str
    position: int = Field(description="1 is the next job to start.")
    provider: str
    owner_id: str
    priority: int
    effective_priority: int = Field(description="The priority plus what the job gained by waiting.")
    waiting_seconds: float
    eta_seconds: float | None = Field(description="Rough time until it starts, from recent run times; null if unknown.")


class QueueResponse(BaseModel):
    """The queue: depth, running jobs, limits and the waiting jobs in the order they will start."""

    depth: int
    running: int
    limits: QueueLimits
    jobs: list[QueuedJob]


class PriorityUpdate(BaseModel):
    """A new priority for a waiting job (higher starts first)."""

    priority: int = Field(ge=-1000, le=1000)
