"""What crosses the wire for saved configs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from cloudtuner.schemas.jobs import DatasetConfig

CONFIG_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"


class SavedConfigRequest(BaseModel):
    """A SimpleTuner config (config.json) and its datasets (multidatabackend.json)."""

    model_config = ConfigDict(extra="forbid")

    config: dict[str, Any] = Field(description='SimpleTuner arguments, such as {"--model_family": "flux"}.')
    dataloader_config: list[DatasetConfig] = Field(description="The datasets, as in multidatabackend.json.")
    description: str | None = Field(default=None, max_length=2000)


class SavedConfigSummary(BaseModel):
    """A saved config as the list shows it."""

    name: str
    description: str | None = None
    model_family: str | None = None
    model_type: str | None = None
    datasets: int
    latest_commit: str | None = None
    created_at: datetime
    updated_at: datetime


class SavedConfigResponse(SavedConfigSummary):
    """A saved config in full."""

    config: dict[str, Any]
    dataloader_config: list[dict[str, Any]]


class SavedConfigListResponse(BaseModel):
    """Every saved config, by name."""

    configs: list[SavedConfigSummary]


class ConfigHistoryEntry(BaseModel):
    """One saved version of a config."""

    commit: str
    message: str
    created_at: datetime


class ConfigHistoryResponse(BaseModel):
    """A config's versions, newest first."""

    name: str
    history: list[ConfigHistoryEntry]
