"""Tuning of the Replicate provider and the shapes it returns beyond the contract."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from cloudtuner.providers.replicate.hardware import DEFAULT_HARDWARE
from cloudtuner.providers.replicate.retries import CreateThrottle, RetryPolicy, Timeouts
from cloudtuner.settings import Settings

MAX_UPLOAD_BYTES = 100 * 1024 * 1024


@dataclass(frozen=True)
class ReplicateOptions:
    """Tuning of the provider; the defaults suit production."""

    default_hardware: str = DEFAULT_HARDWARE
    timeouts: Timeouts = field(default_factory=Timeouts)
    create_timeout_seconds: float = 30.0
    """Read timeout of the create call; past it the outcome is unknown and is reconciled."""
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    create_throttle: CreateThrottle = field(default_factory=CreateThrottle)
    """How long create calls wait after a 429 on one (``Retry-After``, capped)."""
    create_settle_seconds: float = 15.0
    """After a create call got no reply, how long Replicate may still be making the run: until then
    ``find_job_by_reference`` does not promise there is none."""
    version_cache_seconds: float = 300.0
    secret_cache_seconds: float = 3600.0
    file_reuse_margin: timedelta = timedelta(minutes=15)
    """An uploaded file is reused only if it expires later than this from now."""
    max_upload_bytes: int = MAX_UPLOAD_BYTES
    reference_max_pages: int = 20
    """Pages of predictions (100 each) read at most when looking for a job's run."""
    list_max_pages: int = 10
    file_list_max_pages: int = 5

    @classmethod
    def from_settings(cls, settings: Settings) -> ReplicateOptions:
        """Return the defaults with the timeouts the settings give.

        ``CLOUDTUNER_REPLICATE_CONNECT_TIMEOUT_SECONDS`` is the connect timeout;
        ``CLOUDTUNER_REPLICATE_TIMEOUT_SECONDS`` the read timeout of every call, the create call's included.
        """
        read = settings.replicate_timeout_seconds
        return cls(
            timeouts=Timeouts(connect=settings.replicate_connect_timeout_seconds, read=read),
            create_timeout_seconds=read,
        )


@dataclass(frozen=True)
class TrainerVersion:
    """One version of a trainer model, as ``GET /api/cloud/providers/replicate/versions`` shows it."""

    model: str
    id: str
    created_at: datetime | None
    cog_version: str | None

    def to_dict(self) -> dict[str, Any]:
        """Return JSON-ready data."""
        return {
            "model": self.model,
            "id": self.id,
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "cog_version": self.cog_version,
        }
