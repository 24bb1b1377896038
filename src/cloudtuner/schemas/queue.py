"""What crosses the wire for the job queue: its limits, its order and a job's place in it."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from cloudtuner.core.roles import Role

MIN_PRIORITY = -1000
MAX_PRIORITY = 1000

DEFAULT_ROLE_PRIORITIES: dict[Role, int] = {Role.VIEWER: 0, Role.RESEARCHER: 0, Role.LEAD: 10, Role.ADMIN: 20}
"""The priority a job starts at, by its submitter's role, until an admin changes it.

A lead's job starts 10 steps ahead of a researcher's: with the default ``aging_seconds`` (600), a
researcher's job that has waited 100 minutes ranks with a lead's just submitted.
"""

Priority = Annotated[int, Field(ge=MIN_PRIORITY, le=MAX_PRIORITY)]


class QueueLimits(BaseModel):
    """How many jobs may run or wait at once (``None``: no limit), how waiting raises a job's
    priority, and the priority new jobs start at by their submitter's role."""

    model_config = ConfigDict(extra="forbid")

    max_concurrent: int | None = Field(default=None, ge=1, description="Jobs running at once, all providers.")
    max_concurrent_per_user: int | None = Field(default=None, ge=1, description="Jobs running at once per user.")
    max_concurrent_per_team: int | None = Field(
        default=None, ge=1, description="Jobs running at once per team (jobs submitted by no team are not counted)."
    )
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
    role_priorities: dict[Role, Priority] = Field(
        default_factory=lambda: dict(DEFAULT_ROLE_PRIORITIES),
        description="The priority a new job starts at, by its submitter's role (every role is listed).",
    )

    @field_validator("role_priorities")
    @classmethod
    def _every_role(cls, value: dict[Role, int]) -> dict[Role, int]:
        """List every role: those never set have their default."""
        return {role: value.get(role, DEFAULT_ROLE_PRIORITIES[role]) for role in Role}

    @property
    def limits_running(self) -> bool:
        """Return True if any limit on running jobs is set."""
        return bool(
            self.max_concurrent
            or self.max_concurrent_per_user
            or self.max_concurrent_per_team
            or self.max_concurrent_per_provider
            or self.provider_limits
        )

    def priority_for(self, role: Role) -> int:
        """Return the priority a job submitted by someone of ``role`` starts at."""
        return self.role_priorities[role]


class QueueLimitsUpdate(BaseModel):
    """Fields to change; a field sent as null removes that limit."""

    model_config = ConfigDict(extra="forbid")

    max_concurrent: int | None = Field(default=None, ge=1)
    max_concurrent_per_user: int | None = Field(default=None, ge=1)
    max_concurrent_per_team: int | None = Field(default=None, ge=1)
    max_concurrent_per_provider: int | None = Field(default=None, ge=1)
    provider_limits: dict[str, int] | None = None
    max_queued_per_user: int | None = Field(default=None, ge=1)
    aging_seconds: float | None = Field(default=None, gt=0)
    role_priorities: dict[Role, Priority] | None = Field(
        default=None,
        description='Starting priorities of the roles named, e.g. {"lead": 15}; the others keep theirs. '
        "null puts every role back to its default.",
    )


class QueuedJob(BaseModel):
    """A waiting job and its place in the queue."""

    job_id: str
    position: int = Field(description="1 is the next job to start.")
    provider: str
    owner_id: str
    owner: str | None = Field(default=None, description="The owner's username; None if the user no longer exists.")
    team: str | None = Field(default=None, description="The team the job was submitted under.")
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

    priority: Priority
