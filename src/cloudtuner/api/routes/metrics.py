"""Cost and metrics routes: hardware prices, spending-limit status, job metrics, Prometheus exposition."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response

from cloudtuner.api.deps import Context, requires
from cloudtuner.core.permissions import Permission, Principal
from cloudtuner.schemas.common import ErrorResponse
from cloudtuner.schemas.costs import CostLimitReport, HardwareListResponse, MetricsResponse
from cloudtuner.services import costs_prices, metrics, metrics_exposition, spending_limits

router = APIRouter(tags=["costs and metrics"])

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Unknown provider or an invalid range."},
    422: {"model": ErrorResponse, "description": "A parameter has the wrong type."},
}
ViewMetrics = Annotated[Principal, Depends(requires(Permission.METRICS_VIEW, Permission.PROVIDER_VIEW))]
ViewLimits = Annotated[
    Principal, Depends(requires(Permission.METRICS_VIEW, Permission.PROVIDER_VIEW, Permission.JOB_SUBMIT))
]
"""Whoever may submit may see how much of the limits their submissions meet is used."""
ViewPrices = Annotated[
    Principal, Depends(requires(Permission.PROVIDER_VIEW, Permission.PROVIDER_MANAGE, Permission.JOB_SUBMIT))
]


@router.get(
    "/api/cloud/providers/{provider}/hardware",
    response_model=HardwareListResponse,
    responses=ERRORS,
    summary="A provider's hardware and prices",
)
async def hardware(provider: str, ctx: Context, _principal: ViewPrices) -> HardwareListResponse:
    """Hardware info: each profile's GPU type and count, VRAM and price per second and per hour.
    The provider's published prices, overridden by `hardware_prices` in its settings."""
    table = await costs_prices.price_table(ctx, provider.strip().lower())
    return HardwareListResponse(
        provider=table.provider, default_hardware=table.default_sku, hardware=list(table.profiles.values())
    )


@router.get(
    "/api/cloud/metrics/cost-limit",
    response_model=CostLimitReport,
    responses=ERRORS,
    summary="Spending limit status",
)
async def cost_limit(
    ctx: Context,
    _principal: ViewLimits,
    provider: Annotated[str | None, Query(description="Only the global limit and this provider's.")] = None,
) -> CostLimitReport:
    """Each enabled spending limit (global and per provider): amount, period, action, what is spent
    and reserved in the current period, the percentage used and when the period resets."""
    return await spending_limits.cost_limit_report(ctx, provider.strip().lower() if provider else None)


@router.get("/api/metrics", response_model=MetricsResponse, responses=ERRORS, summary="Job and cost metrics")
async def job_metrics(
    ctx: Context,
    _principal: ViewMetrics,
    days: Annotated[int | None, Query(ge=1, le=metrics.MAX_RANGE_DAYS, description="The last N calendar days.")] = None,
    since: Annotated[datetime | None, Query(description="Start of the range (ISO 8601 with a zone).")] = None,
    until: Annotated[datetime | None, Query(description="End of the range (default: now).")] = None,
    provider: Annotated[str | None, Query(description="Only this provider's jobs.")] = None,
) -> MetricsResponse:
    """Jobs submitted in a range (default: the last 30 days): by status and provider, spend per day,
    provider and hardware, average queue and run times, and the success rate."""
    return await metrics.job_metrics(
        ctx, days=days, since=since, until=until, provider=provider.strip().lower() if provider else None
    )


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text exposition format 0.0.4."}},
)
async def prometheus(ctx: Context, _principal: ViewMetrics) -> Response:
    """Job counts by state, queue depth, spend, spending limits, provider call latency and errors, and
    webhook counts, for Prometheus to scrape (send an API key with `metrics.view` once users exist)."""
    return Response(await metrics_exposition.exposition(ctx), media_type=metrics_exposition.CONTENT_TYPE)
