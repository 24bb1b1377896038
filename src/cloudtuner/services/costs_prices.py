"""Hardware prices: each provider's published price table, with the provider settings' overrides on top.

A provider that publishes hardware profiles (Replicate: its hardware catalog, including
``CLOUDTUNER_REPLICATE_HARDWARE``) supplies the defaults. The provider settings' ``hardware_prices``
(``PUT /api/cloud/providers/{provider}``) change a profile's price, or add a profile the provider
does not list (for example, what an hour of a self-hosted worker's GPU costs). Prices are per second
of run time for the whole profile, all of its GPUs together.

Two prices matter for a running job: the **table price** (what cloudtuner charges the job at: the
settings' price, else the provider's) and the **provider's own price**, which turns a cost the
provider reports back into the seconds it billed (see ``services.costs``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from cloudtuner.core.errors import InvalidRequestError
from cloudtuner.providers.base import CloudTrainerService
from cloudtuner.providers.replicate import ReplicateProvider
from cloudtuner.schemas.costs import HardwarePrice, HardwarePriceOverride
from cloudtuner.schemas.settings import ProviderSettings
from cloudtuner.services.context import ServiceContext
from cloudtuner.services.settings_documents import get_provider_settings

SOURCE_PROVIDER = "provider"
SOURCE_SETTINGS = "settings"


@dataclass(frozen=True)
class PriceTable:
    """The hardware a provider offers, by SKU, with the price cloudtuner charges jobs at."""

    provider: str
    profiles: Mapping[str, HardwarePrice]
    default_sku: str | None

    def find(self, sku: str | None) -> HardwarePrice | None:
        """Return the profile of ``sku`` (None: the default hardware), or None if it has no price."""
        key = self.resolve(sku)
        return self.profiles.get(key) if key is not None else None

    def resolve(self, sku: str | None) -> str | None:
        """Return the SKU a job asking for ``sku`` runs on (the default when it names none)."""
        if sku is None or not sku.strip():
            return self.default_sku
        return sku.strip().lower()

    def price(self, sku: str | None) -> float | None:
        """Return the price per second of ``sku`` (None: the default), or None if unknown."""
        profile = self.find(sku)
        return profile.price_per_second if profile is not None else None


def _priced(
    sku: str,
    *,
    name: str,
    gpu_type: str | None,
    gpu_count: int,
    vram_gb: float | None,
    price_per_second: float,
    source: str,
    default: bool,
    available: bool = True,
) -> HardwarePrice:
    return HardwarePrice(
        sku=sku,
        name=name,
        gpu_type=gpu_type,
        gpu_count=gpu_count,
        vram_gb=vram_gb,
        total_vram_gb=vram_gb * gpu_count if vram_gb is not None else None,
        price_per_second=price_per_second,
        price_per_hour=round(price_per_second * 3600, 6),
        source=source,
        default=default,
        available=available,
    )


def provider_profiles(provider: CloudTrainerService) -> tuple[list[HardwarePrice], str | None]:
    """Return the hardware profiles ``provider`` publishes, at its own prices, and its default SKU.

    Providers that publish none (self-hosted workers, scripted test providers) return ``([], None)``.
    """
    if not isinstance(provider, ReplicateProvider):
        return [], None
    default = provider.catalog.default_sku
    return [
        _priced(
            profile.sku,
            name=profile.name,
            gpu_type=profile.gpu_model,
            gpu_count=profile.gpu_count,
            vram_gb=float(profile.vram_gib),
            price_per_second=profile.price_per_second,
            source=SOURCE_PROVIDER,
            default=profile.sku == default,
            available=profile.available,
        )
        for profile in provider.hardware_profiles
    ], default


def provider_price(provider: CloudTrainerService | None, sku: str | None) -> float | None:
    """Return the provider's own price per second of ``sku``, or None if it publishes none.

    Cheap and synchronous: called inside the scheduler's write transactions.
    """
    if sku is None or not isinstance(provider, ReplicateProvider):
        return None
    profile = provider.catalog.find(sku)
    return profile.price_per_second if profile is not None else None


def build_price_table(provider: CloudTrainerService, settings: ProviderSettings) -> PriceTable:
    """Return ``provider``'s published profiles with the settings' ``hardware_prices`` applied.

    A SKU the provider does not list becomes a profile of its own when the override gives a price.
    The default hardware is the settings' ``default_hardware``, else the provider's.
    """
    published, provider_default = provider_profiles(provider)
    default_sku = (settings.default_hardware or "").strip().lower() or provider_default
    table: dict[str, HardwarePrice] = {profile.sku: profile for profile in published}
    for sku, override in settings.hardware_prices.items():
        base = table.get(sku)
        price = override.per_second
        if base is None:
            if price is None:
                continue
            table[sku] = _priced(
                sku,
                name=override.name or sku,
                gpu_type=override.gpu_type,
                gpu_count=override.gpu_count or 1,
                vram_gb=override.vram_gb,
                price_per_second=price,
                source=SOURCE_SETTINGS,
                default=False,
            )
            continue
        gpu_count = override.gpu_count or base.gpu_count
        vram = override.vram_gb if override.vram_gb is not None else base.vram_gb
        table[sku] = _priced(
            sku,
            name=override.name or base.name,
            gpu_type=override.gpu_type or base.gpu_type,
            gpu_count=gpu_count,
            vram_gb=vram,
            price_per_second=price if price is not None else base.price_per_second,
            source=SOURCE_SETTINGS,
            default=False,
            available=base.available,
        )
    profiles = {sku: profile.model_copy(update={"default": sku == default_sku}) for sku, profile in table.items()}
    return PriceTable(provider=provider.provider_name, profiles=profiles, default_sku=default_sku)


async def price_table(ctx: ServiceContext, provider_name: str) -> PriceTable:
    """Return the price table in use for ``provider_name`` (settings are cached for a few seconds).

    Raises:
        UnknownProviderError: no provider has that name.
    """
    provider = ctx.providers.get(provider_name)
    return build_price_table(provider, await get_provider_settings(ctx, provider_name))


def check_price_overrides(provider: CloudTrainerService, overrides: Mapping[str, HardwarePriceOverride]) -> None:
    """Refuse overrides that add hardware without saying what it costs.

    Raises:
        InvalidRequestError: an override names hardware the provider does not list and gives no price.
    """
    known = {profile.sku for profile in provider_profiles(provider)[0]}
    for sku, override in overrides.items():
        if sku not in known and override.per_second is None:
            raise InvalidRequestError(
                f"hardware_prices.{sku}: {provider.provider_name} lists no hardware {sku!r}; a new profile "
                "needs price_per_second or price_per_hour (and best gpu_type, gpu_count and vram_gb)."
            )
