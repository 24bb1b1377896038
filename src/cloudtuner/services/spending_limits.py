"""Spending limits: which apply to a submission, and how much of each is used.

Two kinds of limit, each an optional :class:`~cloudtuner.schemas.costs.CostLimit` (amount,
calendar period, action ``warn`` or ``block``):

* the **global** limit, over every provider's jobs: ``PUT /api/cloud/settings`` with ``cost_limit``;
* a **provider** limit, over that provider's jobs: ``PUT /api/cloud/providers/{provider}``.

A job counts in the period in which it was submitted, with its cost (accrued, then final) and,
while unfinished, with the part of its reserved estimate that its cost has not reached yet.
Periods are calendar days, weeks (Monday to Sunday) and months in the Cloud settings' time zone.
Enforcement at submission is in ``services.costs_admission``; this module reads the settings and
reports usage.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from cloudtuner.schemas.costs import CostLimit, CostLimitReport, CostLimitStatus
from cloudtuner.schemas.settings import CloudSettings, ProviderSettings
from cloudtuner.services.context import ServiceContext
from cloudtuner.services.costs_admission import (
    GLOBAL_SCOPE,
    LimitScope,
    Reservation,
    provider_scope_key,
    read_usage,
)
from cloudtuner.services.costs_periods import period_window
from cloudtuner.services.settings_documents import get_cloud_settings, get_provider_settings


def enabled_limits(
    cloud: CloudSettings, providers: dict[str, ProviderSettings]
) -> list[tuple[str, str | None, CostLimit]]:
    """Return ``(scope key, provider or None, limit)`` of each enabled limit in these settings."""
    found: list[tuple[str, str | None, CostLimit]] = []
    if cloud.cost_limit is not None and cloud.cost_limit.enabled:
        found.append((GLOBAL_SCOPE, None, cloud.cost_limit))
    for name, settings in providers.items():
        if settings.cost_limit is not None and settings.cost_limit.enabled:
            found.append((provider_scope_key(name), name, settings.cost_limit))
    return found


def scopes_at(
    limits: Sequence[tuple[str, str | None, CostLimit]], time_zone: str, now: datetime
) -> tuple[LimitScope, ...]:
    """Return the limits with the calendar period each is in at ``now``."""
    return tuple(
        LimitScope(key, provider, limit, period_window(limit.period, time_zone, now)) for key, provider, limit in limits
    )


async def limit_scopes(ctx: ServiceContext, provider: str | None) -> tuple[LimitScope, ...]:
    """Return the enabled limits a job of ``provider`` counts against (all providers' when None), now.

    Raises:
        UnknownProviderError: no provider has that name.
    """
    cloud = await get_cloud_settings(ctx)
    names = [provider] if provider is not None else ctx.providers.names
    providers = {name: await get_provider_settings(ctx, name) for name in names}
    return scopes_at(enabled_limits(cloud, providers), cloud.time_zone, ctx.clock.now())


def reservation_for(scopes: tuple[LimitScope, ...], amount_usd: float | None) -> Reservation | None:
    """Return what a new job with an estimate of up to ``amount_usd`` reserves against ``scopes``.

    None when no limit applies: the submission then skips the check altogether. ``amount_usd``
    None means the job's cost cannot be estimated (no price for its hardware).
    """
    if not scopes:
        return None
    return Reservation(amount_usd=amount_usd or 0.0, scopes=scopes, priced=amount_usd is not None)


def _status(scope: LimitScope, spent: float, reserved: float) -> CostLimitStatus:
    limit: CostLimit = scope.limit
    committed = spent + reserved
    return CostLimitStatus(
        scope="provider" if scope.provider else "global",
        provider=scope.provider,
        enabled=limit.enabled,
        amount=limit.amount,
        period=limit.period,
        action=limit.action,
        time_zone=scope.window.time_zone,
        period_start=scope.window.start,
        resets_at=scope.window.end,
        spent_usd=round(spent, 4),
        reserved_usd=round(reserved, 4),
        committed_usd=round(committed, 4),
        remaining_usd=round(max(0.0, limit.amount - committed), 4),
        percent_used=round(100 * committed / limit.amount, 2),
        exceeded=committed >= limit.amount,
    )


async def cost_limit_report(ctx: ServiceContext, provider: str | None = None) -> CostLimitReport:
    """Return every enabled limit (the global one, and each provider's, or ``provider``'s only) and its use.

    Raises:
        UnknownProviderError: ``provider`` names no provider.
    """
    if provider is not None:
        ctx.providers.get(provider)
    scopes = await limit_scopes(ctx, provider)
    statuses: list[CostLimitStatus] = []
    async with ctx.db.read() as session:
        for scope in scopes:
            usage = await read_usage(session, scope.provider, scope.window)
            statuses.append(_status(scope, usage.spent_usd, usage.reserved_usd))
    time_zone = (await get_cloud_settings(ctx)).time_zone
    busiest = max(statuses, key=lambda status: status.percent_used, default=None)
    return CostLimitReport(time_zone=time_zone, limits=statuses, limit=busiest)
