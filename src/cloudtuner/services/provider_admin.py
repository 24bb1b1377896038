"""Provider administration: tokens, settings (hardware prices and spending limit included), credential
checks, and what was spent at a provider."""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

from sqlalchemy import func, select

from cloudtuner.core.errors import ProviderAuthError, ProviderError, UnknownProviderError
from cloudtuner.db.tables import JobRow
from cloudtuner.providers.replicate import ReplicateProvider
from cloudtuner.schemas.costs import LimitPeriod
from cloudtuner.schemas.settings import ProviderSettingsResponse, ProviderSettingsUpdate, TokenStatus
from cloudtuner.services.context import ServiceContext
from cloudtuner.services.costs_periods import period_window
from cloudtuner.services.costs_prices import build_price_table, check_price_overrides, price_table
from cloudtuner.services.secrets import SecretStore
from cloudtuner.services.settings_documents import get_cloud_settings, get_provider_settings, update_provider_settings
from cloudtuner.settings import Settings

log = logging.getLogger(__name__)


def token_secret_name(provider: str) -> str:
    """Return the secret name of a provider's saved token."""
    return f"provider:{provider}:token"


def environment_token(settings: Settings, provider: str) -> str | None:
    """Return the provider's token from the environment (REPLICATE_API_TOKEN for replicate), if any."""
    if provider == "replicate" and settings.replicate_api_token is not None:
        return settings.replicate_api_token.get_secret_value().strip() or None
    return None


async def provider_token(settings: Settings, secrets: SecretStore, provider: str) -> str | None:
    """Return the token a provider should use: the saved one, else the environment's, else None."""
    saved = await secrets.get(token_secret_name(provider))
    return saved or environment_token(settings, provider)


async def token_status(ctx: ServiceContext, provider: str) -> TokenStatus:
    """Return whether a provider has a token and where it comes from (never the token)."""
    if await ctx.secrets.get(token_secret_name(provider)):
        return TokenStatus(configured=True, source="saved")
    if environment_token(ctx.settings, provider):
        return TokenStatus(configured=True, source="environment")
    return TokenStatus(configured=False)


async def save_token(ctx: ServiceContext, provider: str, token: str) -> TokenStatus:
    """Store a provider's token encrypted; it is used from the next call on.

    Raises:
        UnknownProviderError: no provider has that name.
    """
    ctx.providers.get(provider)
    await ctx.secrets.put(token_secret_name(provider), token)
    log.info("saved a new %s token", provider)
    return TokenStatus(configured=True, source="saved")


async def delete_token(ctx: ServiceContext, provider: str) -> TokenStatus:
    """Delete a provider's saved token; the environment's, if any, applies again.

    Raises:
        UnknownProviderError: no provider has that name.
    """
    ctx.providers.get(provider)
    await ctx.secrets.delete(token_secret_name(provider))
    return await token_status(ctx, provider)


async def provider_overview(ctx: ServiceContext, provider: str) -> ProviderSettingsResponse:
    """Return a provider's settings, token status and capabilities.

    Raises:
        UnknownProviderError: no provider has that name.
    """
    implementation = ctx.providers.get(provider)
    settings = await get_provider_settings(ctx, provider)
    return ProviderSettingsResponse(
        provider=provider,
        settings=settings,
        token=await token_status(ctx, provider),
        capabilities=asdict(implementation.capabilities),
        hardware=list(build_price_table(implementation, settings).profiles.values()),
    )


async def change_provider_settings(
    ctx: ServiceContext, provider: str, update: ProviderSettingsUpdate
) -> ProviderSettingsResponse:
    """Apply a settings change and return the provider's overview.

    Raises:
        UnknownProviderError: no provider has that name.
        InvalidRequestError: the change is empty, or ``hardware_prices`` adds hardware without a price.
    """
    if update.hardware_prices:
        check_price_overrides(ctx.providers.get(provider), update.hardware_prices)
    await update_provider_settings(ctx, provider, update)
    return await provider_overview(ctx, provider)


async def validate_provider(ctx: ServiceContext, provider: str) -> dict[str, Any]:
    """Check a provider's credentials; return ``valid`` with the account, or the reason it failed.

    A refused or missing token is an answer, not an error: the reply says what to fix.

    Raises:
        UnknownProviderError: no provider has that name.
    """
    implementation = ctx.providers.get(provider)
    try:
        account = await implementation.validate_credentials()
    except ProviderAuthError as exc:
        return {"success": False, "valid": False, "provider": provider, "detail": exc.message, "code": exc.code}
    except ProviderError as exc:
        return {"success": False, "valid": False, "provider": provider, "detail": exc.message, "code": exc.code}
    return {"success": True, "valid": True, "provider": provider, "account": account}


async def replicate_versions(ctx: ServiceContext, model: str | None = None) -> dict[str, Any]:
    """Return the Replicate trainer model's versions, newest first.

    Raises:
        ProviderAuthError: no token, or Replicate refused it.
        ProviderUnavailableError: Replicate could not be asked.
    """
    provider = _replicate(ctx)
    versions = await provider.list_versions(model)
    return {"success": True, "provider": "replicate", "versions": [version.to_dict() for version in versions]}


async def spend_report(ctx: ServiceContext, provider: str) -> dict[str, Any]:
    """Return what this server recorded as spent at ``provider``: in all, and this calendar month (in
    the Cloud settings' time zone), with the provider's hardware prices.

    Raises:
        UnknownProviderError: no provider has that name.
    """
    ctx.providers.get(provider)
    time_zone = (await get_cloud_settings(ctx)).time_zone
    this_month = period_window(LimitPeriod.MONTHLY, time_zone, ctx.clock.now())
    month_start = this_month.start
    table = await price_table(ctx, provider)
    async with ctx.db.read() as session:
        total = await session.scalar(
            select(func.coalesce(func.sum(JobRow.cost_usd), 0.0)).where(JobRow.provider == provider)
        )
        month = await session.scalar(
            select(func.coalesce(func.sum(JobRow.cost_usd), 0.0)).where(
                JobRow.provider == provider, JobRow.created_at >= month_start, JobRow.created_at < this_month.end
            )
        )
    return {
        "success": True,
        "provider": provider,
        "balance_available": False,
        "balance_usd": None,
        "detail": (
            "Replicate's API does not report an account balance; see https://replicate.com/account/billing. "
            "The figures below are the costs of the jobs this server ran."
        ),
        "spent_usd": round(float(total or 0.0), 4),
        "spent_this_month_usd": round(float(month or 0.0), 4),
        "month_started_at": month_start.isoformat(),
        "time_zone": time_zone,
        "hardware": [profile.model_dump(mode="json") for profile in table.profiles.values()],
    }


def _replicate(ctx: ServiceContext) -> ReplicateProvider:
    provider = ctx.providers.get("replicate")
    if not isinstance(provider, ReplicateProvider):
        raise UnknownProviderError("The replicate provider on this server is not the built-in one.")
    return provider
