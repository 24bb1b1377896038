"""A new job's money, worked out at submission: hardware and price, estimate, reservation, warnings.

``services.submissions`` calls :func:`plan_job_costs` for every submission and writes
:meth:`CostPlan.columns` into the new job's row; the reservation, if any limit applies, goes with
the row to the inserting transaction (``services.costs_admission``).

The submit path stays cheap: what a provider's settings documents imply (its price table, the
enabled limits, the time zone) is kept per process for as long as this process uses the same
cached copies of those documents (``settings_documents.cached_version``: a change made here shows
at once, one made by another process within the documents' cache time), and an estimate is kept
for as long as the learned history and price it came from. A burst of submissions of the same kind
of job then costs a config parse and a few dictionary lookups.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cloudtuner.db.engine import Database
from cloudtuner.schemas.costs import CostEstimate, CostLimit, CostLimitStatus, HardwarePrice
from cloudtuner.services.context import ServiceContext
from cloudtuner.services.costs import format_usd
from cloudtuner.services.costs_admission import Reservation
from cloudtuner.services.costs_prices import PriceTable, build_price_table
from cloudtuner.services.estimates import History, TrainingShape, estimate_from, learned_history, training_shape
from cloudtuner.services.settings_documents import (
    CLOUD_SCOPE,
    cached_version,
    get_cloud_settings,
    get_provider_settings,
    provider_scope,
)
from cloudtuner.services.spending_limits import cost_limit_report, enabled_limits, reservation_for, scopes_at

_NO_HISTORY = History(())
_MAX_CACHED_ESTIMATES = 512


@dataclass(frozen=True)
class CostPlan:
    """What a submission's job will run on, costs per second, is expected to cost, and reserves."""

    hardware: str | None
    price_per_second: float | None
    shape: TrainingShape
    estimate: CostEstimate
    estimate_json: Mapping[str, Any]
    budget_usd: float | None
    reservation: Reservation | None
    warnings: tuple[str, ...]

    def columns(self) -> dict[str, Any]:
        """Return the job row's cost columns (``db.tables.JobRow``) for this plan."""
        estimate = self.estimate
        return {
            "hardware": self.hardware,
            "price_per_second": self.price_per_second,
            "run_seconds": None,
            "cost_final": False,
            "cost_reserved_usd": estimate.high_usd or 0.0,
            "estimate_low_usd": estimate.low_usd,
            "estimate_high_usd": estimate.high_usd,
            "cost_estimate": self.estimate_json,
            "budget_usd": self.budget_usd,
            "training_kind": self.shape.kind,
            "work_units": self.shape.work_units,
        }


@dataclass(frozen=True)
class _ProviderInputs:
    """What one provider's settings (and the Cloud settings) imply for new jobs."""

    versions: tuple[object, object]
    table: PriceTable
    limits: tuple[tuple[str, str | None, CostLimit], ...]
    time_zone: str


@dataclass
class _Cache:
    inputs: dict[str, _ProviderInputs] = field(default_factory=dict)
    estimates: dict[
        tuple[str, TrainingShape, str | None],
        tuple[HardwarePrice | None, History, CostEstimate, Mapping[str, Any]],
    ] = field(default_factory=dict)


_CACHES: weakref.WeakKeyDictionary[Database, _Cache] = weakref.WeakKeyDictionary()


def _cache(ctx: ServiceContext) -> _Cache:
    cache = _CACHES.get(ctx.db)
    if cache is None:
        cache = _CACHES[ctx.db] = _Cache()
    return cache


def _versions(ctx: ServiceContext, provider: str) -> tuple[object | None, object | None]:
    return cached_version(ctx, CLOUD_SCOPE), cached_version(ctx, provider_scope(provider))


async def _provider_inputs(ctx: ServiceContext, provider: str) -> _ProviderInputs:
    """Return the price table, enabled limits and time zone for ``provider``'s new jobs.

    Raises:
        UnknownProviderError: no provider has that name.
    """
    cache = _cache(ctx)
    found = cache.inputs.get(provider)
    if found is not None:
        cloud_version, provider_version = _versions(ctx, provider)
        if found.versions[0] is cloud_version and found.versions[1] is provider_version:
            return found
    implementation = ctx.providers.get(provider)
    cloud = await get_cloud_settings(ctx)
    settings = await get_provider_settings(ctx, provider)
    cloud_version, provider_version = _versions(ctx, provider)
    inputs = _ProviderInputs(
        versions=(cloud_version, provider_version),
        table=build_price_table(implementation, settings),
        limits=tuple(enabled_limits(cloud, {provider: settings})),
        time_zone=cloud.time_zone,
    )
    if cloud_version is not None and provider_version is not None:
        cache.inputs[provider] = inputs
    return inputs


async def _estimate(
    ctx: ServiceContext, provider: str, shape: TrainingShape, sku: str | None, profile: HardwarePrice | None
) -> tuple[CostEstimate, Mapping[str, Any]]:
    history = await learned_history(ctx, provider, shape.kind, sku) if sku else _NO_HISTORY
    estimates = _cache(ctx).estimates
    key = (provider, shape, sku)
    found = estimates.get(key)
    if found is not None and found[0] is profile and found[1] is history:
        return found[2], found[3]
    estimate = estimate_from(shape, sku, profile, history)
    dumped = estimate.model_dump(mode="json")
    if len(estimates) >= _MAX_CACHED_ESTIMATES:
        estimates.clear()
    estimates[key] = (profile, history, estimate, dumped)
    return estimate, dumped


@dataclass(frozen=True)
class _JobEstimate:
    inputs: _ProviderInputs
    sku: str | None
    profile: HardwarePrice | None
    shape: TrainingShape
    estimate: CostEstimate
    estimate_json: Mapping[str, Any]


async def _estimate_job(
    ctx: ServiceContext,
    provider: str,
    config: Mapping[str, Any],
    dataloader: Sequence[Mapping[str, Any]],
    hardware: str | None,
    image_count: int | None,
) -> _JobEstimate:
    """Estimate a job on ``hardware`` or the provider's default (its profile is None where no price
    is known).

    Raises:
        UnknownProviderError: no provider has that name.
    """
    inputs = await _provider_inputs(ctx, provider)
    sku = inputs.table.resolve(hardware)
    profile = inputs.table.find(sku)
    shape = training_shape(config, dataloader, image_count)
    estimate, dumped = await _estimate(ctx, provider, shape, sku, profile)
    return _JobEstimate(inputs, sku, profile, shape, estimate, dumped)


async def plan_job_costs(
    ctx: ServiceContext,
    provider: str,
    config: Mapping[str, Any],
    dataloader: Sequence[Mapping[str, Any]],
    *,
    hardware: str | None,
    budget_usd: float | None,
    image_count: int | None = None,
) -> CostPlan:
    """Return the cost plan of a new job (see the module docstring).

    Raises:
        UnknownProviderError: no provider has that name.
    """
    planned = await _estimate_job(ctx, provider, config, dataloader, hardware, image_count)
    inputs, profile, estimate = planned.inputs, planned.profile, planned.estimate
    warnings: list[str] = []
    if budget_usd is not None and estimate.high_usd is not None and estimate.high_usd > budget_usd:
        expected = estimate.expected_usd or 0.0
        likely = "is likely to" if expected >= budget_usd else "may"
        warnings.append(
            f"The estimate ({format_usd(estimate.low_usd or 0.0)} to {format_usd(estimate.high_usd)}) is above "
            f"this job's budget cap of {format_usd(budget_usd)}: it {likely} be cancelled when its cost reaches "
            "the cap."
        )
    reservation = None
    if inputs.limits:
        scopes = scopes_at(inputs.limits, inputs.time_zone, ctx.clock.now())
        reservation = reservation_for(scopes, estimate.high_usd)
    return CostPlan(
        hardware=planned.sku,
        price_per_second=profile.price_per_second if profile is not None else None,
        shape=planned.shape,
        estimate=estimate,
        estimate_json=planned.estimate_json,
        budget_usd=budget_usd,
        reservation=reservation,
        warnings=tuple(warnings),
    )


async def preview_costs(
    ctx: ServiceContext,
    provider: str,
    config: Mapping[str, Any],
    dataloader: Sequence[Mapping[str, Any]],
    hardware: str | None,
    image_count: int | None = None,
) -> tuple[CostEstimate, list[CostLimitStatus]]:
    """Return a job's estimate and the spending limits it would count against, as they stand now.

    Raises:
        UnknownProviderError: no provider has that name.
    """
    planned = await _estimate_job(ctx, provider, config, dataloader, hardware, image_count)
    return planned.estimate, (await cost_limit_report(ctx, provider)).limits
