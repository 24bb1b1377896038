"""Tuning of the Replicate provider and the shapes it returns beyond the contract."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from cloudtuner.providers.replicate.client import RetryPolicy, Timeouts
from cloudtuner.providers.replicate.hardware import DEFAULT_HARDWARE

MAX_UPLOAD_BYTES = 100 * 1024 * 1024


@dataclass(frozen=True)
class ReplicateOptions:
    """Tuning of the provider; the defaults suit production."""

    default_hardware: str = DEFAULT_HARDWARE
    timeouts: Timeouts = field(default_factory=Timeouts)
    create_timeout_seconds: float = 30.0
    """Read timeout of the create call; past it the outcome is unknown and is reconciled."""
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    version_cache_seconds: float = 300.0
    secret_cache_seconds: float = 3600.0
    file_reuse_margin: timedelta = timedelta(minutes=15)
    """An uploaded file is reused only if it expires later than this from now."""
    max_upload_bytes: int = MAX_UPLOAD_BYTES
    reference_max_pages: int = 20
    """Pages of predictions (100 each) read at most when looking for a job's run."""
    list_max_pages: int = 10
    file_list_max_pages: int = 5


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
