"""What crosses the wire about money: hardware prices, estimates, spending limits, cost metrics.

All amounts are US dollars. Prices are per second of run time for the whole hardware profile (all
its GPUs together), as providers bill them.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class LimitPeriod(StrEnum):
    """A calendar period of a spending limit, in the Cloud settings' time zone."""

    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"


class LimitAction(StrEnum):
    """What a submission that would go over a spending limit gets."""

    WARN = "warn"
    BLOCK = "block"


_PERIOD_WORDS = {"day": "daily", "week": "weekly", "month": "monthly"}


class CostLimit(BaseModel):
    """A spending limit: at most ``amount`` per calendar ``period``; ``action`` says what happens past it."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(default=True, description="Whether the limit is checked.")
    amount: float = Field(gt=0, le=1_000_000_000, description="US dollars per period.")
    period: LimitPeriod = Field(
        default=LimitPeriod.MONTHLY, description="daily, weekly (Monday to Sunday) or monthly; calendar periods."
    )
    action: LimitAction = Field(
        default=LimitAction.WARN,
        description="warn: the job is accepted with a warning; block: it is refused (HTTP 402).",
    )

    @field_validator("period", "action", mode="before")
    @classmethod
    def _words(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip().lower()
            return _PERIOD_WORDS.get(value, value)
        return value


class HardwarePriceOverride(BaseModel):
    """A price (and, for hardware the provider does not list, its description) set in provider settings."""

    model_config = ConfigDict(extra="forbid")

    price_per_second: float | None = Field(default=None, ge=0, description="US dollars per second.")
    price_per_hour: float | None = Field(default=None, ge=0, description="US dollars per hour (or per second).")
    name: str | None = Field(default=None, max_length=255, description="A readable name, e.g. 2x Nvidia L40S GPU.")
    gpu_type: str | None = Field(default=None, max_length=64, description="GPU model, e.g. L40S, A100, H100.")
    gpu_count: int | None = Field(default=None, ge=1, le=64, description="GPUs in the profile.")
    vram_gb: float | None = Field(default=None, gt=0, le=10_000, description="Memory of one GPU, GB.")

    @model_validator(mode="after")
    def _one_price(self) -> HardwarePriceOverride:
        if self.price_per_second is not None and self.price_per_hour is not None:
            raise ValueError("give price_per_second or price_per_hour, not both")
        return self

    @property
    def per_second(self) -> float | None:
        """Return the price per second this override sets, if any."""
        if self.price_per_second is not None:
            return self.price_per_second
        return self.price_per_hour / 3600 if self.price_per_hour is not None else None


class HardwarePrice(BaseModel):
    """One hardware profile a provider offers, with its price ("hardware info")."""

    sku: str = Field(description="The profile's name in job requests, e.g. gpu-l40s.")
    name: str
    gpu_type: str | None = None
    gpu_count: int = 1
    vram_gb: float | None = Field(default=None, description="Memory of one GPU, GB.")
    total_vram_gb: float | None = Field(default=None, description="Memory of all its GPUs together, GB.")
    price_per_second: float
    price_per_hour: float
    source: str = Field(description="provider (its published price) or settings (set in the provider settings).")
    default: bool = Field(default=False, description="True for the hardware jobs use when they name none.")
    available: bool = Field(default=True, description="False if the provider cannot run jobs on it as configured.")


class HardwareListResponse(BaseModel):
    """A provider's hardware profiles and prices."""

    success: bool = True
    provider: str
    default_hardware: str | None = None
    hardware: list[HardwarePrice]


class EstimateBasis(BaseModel):
    """Where an estimate comes from."""

    source: str = Field(description="history (this server's finished jobs), defaults (the seeds' cost table) or none.")
    samples: int = Field(default=0, description="Finished jobs the figures were learned from.")
    model_family: str | None = None
    model_type: str | None = Field(default=None, description="lora or full.")
    hardware: str | None = None
    steps: int | None = None
    steps_assumed: bool = Field(default=False, description="True if the config gives no step count.")
    work_units: float | None = Field(
        default=None, description="Steps scaled by resolution and batch size (1 unit = one 1024 px image step)."
    )
    seconds_per_unit_low: float | None = None
    seconds_per_unit_high: float | None = None
    price_per_second: float | None = None
    note: str | None = None


class CostEstimate(BaseModel):
    """What a job is expected to cost: a range, and the basis of it."""

    low_usd: float | None = Field(default=None, description="Lower end; None when the hardware has no known price.")
    expected_usd: float | None = None
    high_usd: float | None = Field(default=None, description="Upper end: what spending limits reserve.")
    low_seconds: float
    expected_seconds: float
    high_seconds: float
    basis: EstimateBasis


class CostLimitStatus(BaseModel):
    """A spending limit and how much of its current period is used."""

    scope: str = Field(description="global, or provider (one provider's jobs).")
    provider: str | None = None
    enabled: bool
    amount: float
    period: LimitPeriod
    action: LimitAction
    time_zone: str
    period_start: datetime
    resets_at: datetime = Field(description="When the next period starts.")
    spent_usd: float = Field(description="Accrued and final costs of the period's jobs.")
    reserved_usd: float = Field(description="Estimates still held for the period's unfinished jobs, beyond their cost.")
    committed_usd: float = Field(description="spent_usd + reserved_usd.")
    remaining_usd: float
    percent_used: float = Field(description="committed_usd as a percentage of amount.")
    exceeded: bool


class CostLimitReport(BaseModel):
    """The reply to GET /api/cloud/metrics/cost-limit."""

    success: bool = True
    time_zone: str
    limits: list[CostLimitStatus]
    limit: CostLimitStatus | None = Field(
        default=None, description="The most used enabled limit (the one a submission meets first), if any."
    )


class SpendBucket(BaseModel):
    """Spend of one group of jobs."""

    key: str
    spent_usd: float
    jobs: int


class DurationStats(BaseModel):
    """Average times of finished jobs, seconds."""

    average_queue_seconds: float | None = Field(default=None, description="Submitted to running.")
    average_run_seconds: float | None = Field(default=None, description="Running to finished.")
    average_total_seconds: float | None = Field(default=None, description="Submitted to finished.")
    finished_jobs: int = 0


class MetricsResponse(BaseModel):
    """The reply to GET /api/metrics: jobs and spend over a range of days."""

    success: bool = True
    since: datetime
    until: datetime
    time_zone: str
    jobs_total: int
    jobs_by_status: dict[str, int]
    jobs_by_provider: dict[str, dict[str, int]] = Field(description="provider -> status -> jobs.")
    success_rate: float | None = Field(
        default=None,
        description="completed / (completed + failed) over the range's jobs; cancelled jobs are left out.",
    )
    total_spent_usd: float
    spend_by_day: list[SpendBucket] = Field(description="Calendar days in the time zone, oldest first.")
    spend_by_provider: list[SpendBucket]
    spend_by_hardware: list[SpendBucket]
    durations: DurationStats
    durations_by_provider: dict[str, DurationStats]
