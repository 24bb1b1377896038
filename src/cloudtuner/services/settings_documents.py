"""Cloud settings and provider settings: JSON documents in the job store, edited over the API.

Reads are cached per process for ``CACHE_SECONDS``: dispatch and every webhook consult them, and
a change made through another server process shows within that time.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from cloudtuner.core.errors import InvalidRequestError
from cloudtuner.db.tables import SettingsDocumentRow
from cloudtuner.schemas.settings import (
    CloudSettings,
    CloudSettingsUpdate,
    ProviderSettings,
    ProviderSettingsUpdate,
)
from cloudtuner.services.context import ServiceContext

CLOUD_SCOPE = "cloud"


def provider_scope(provider: str) -> str:
    """Return the document scope of a provider's settings."""
    return f"provider:{provider}"


CACHE_SECONDS = 2.0
"""How long a process reuses a settings document it read; its own writes clear it at once."""


async def _read(ctx: ServiceContext, scope: str) -> dict[str, Any]:
    cached = ctx.settings_cache.get(scope)
    if cached is None or time.monotonic() - cached[0] >= CACHE_SECONDS:
        # One read per scope at a time: callers arriving while it runs wait for the same result.
        cached = (time.monotonic(), asyncio.ensure_future(_load(ctx, scope)))
        ctx.settings_cache[scope] = cached
    try:
        document = await asyncio.shield(cached[1])
    except Exception:
        if ctx.settings_cache.get(scope) is cached:
            del ctx.settings_cache[scope]
        raise
    return dict(document)


def cached_version(ctx: ServiceContext, scope: str) -> object | None:
    """Return a token for this process's cached copy of ``scope``, or None if it has none fresh.

    The token is the same object for as long as that copy is in use, and a new one after it is
    read again or changed by this process: callers may keep what they derived from a document
    (and read it again only when the token changes). Read the document first to have one.
    """
    cached = ctx.settings_cache.get(scope)
    if cached is None or time.monotonic() - cached[0] >= CACHE_SECONDS or not cached[1].done():
        return None
    return cached


async def _load(ctx: ServiceContext, scope: str) -> dict[str, Any]:
    async with ctx.db.read() as session:
        row = await session.get(SettingsDocumentRow, scope)
        return dict(row.document) if row else {}


async def _merge(ctx: ServiceContext, scope: str, changes: dict[str, Any]) -> dict[str, Any]:
    now = ctx.clock.now()
    ctx.settings_cache.pop(scope, None)
    async with ctx.db.transaction() as session:
        row = await session.get(SettingsDocumentRow, scope, with_for_update=True)
        document = {**(row.document if row else {}), **changes}
        if row is None:
            session.add(SettingsDocumentRow(scope=scope, document=document, updated_at=now))
        else:
            row.document = document
            row.updated_at = now
    ctx.settings_cache.pop(scope, None)
    return document


async def read_document(ctx: ServiceContext, scope: str) -> dict[str, Any]:
    """Return a copy of the settings document ``scope`` ({} if never saved), cached as above."""
    return await _read(ctx, scope)


async def merge_document(ctx: ServiceContext, scope: str, changes: dict[str, Any]) -> dict[str, Any]:
    """Merge ``changes`` into the settings document ``scope`` and return the result."""
    return await _merge(ctx, scope, changes)


def _cloud(ctx: ServiceContext, document: dict[str, Any]) -> CloudSettings:
    settings = CloudSettings.model_validate(document)
    settings.effective_public_url = settings.public_url or ctx.settings.public_url
    return settings


async def get_cloud_settings(ctx: ServiceContext) -> CloudSettings:
    """Return the Cloud settings, with defaults for what was never set."""
    return _cloud(ctx, await _read(ctx, CLOUD_SCOPE))


async def update_cloud_settings(ctx: ServiceContext, update: CloudSettingsUpdate) -> CloudSettings:
    """Apply the fields given in ``update``; an empty ``public_url`` ("") clears it, as does
    ``"cost_limit": null``; ``"time_zone": null`` goes back to UTC."""
    changes = update.model_dump(exclude_unset=True, mode="json")
    if "time_zone" in changes and changes["time_zone"] is None:
        changes["time_zone"] = "UTC"
    return _cloud(ctx, await _merge(ctx, CLOUD_SCOPE, changes))


async def public_url(ctx: ServiceContext) -> str | None:
    """Return the public base URL in use: the Cloud setting, else CLOUDTUNER_PUBLIC_URL."""
    return (await get_cloud_settings(ctx)).effective_public_url


async def get_provider_settings(ctx: ServiceContext, provider: str) -> ProviderSettings:
    """Return a provider's settings.

    Raises:
        UnknownProviderError: no provider has that name.
    """
    ctx.providers.get(provider)
    return ProviderSettings.model_validate(await _read(ctx, provider_scope(provider)))


async def update_provider_settings(
    ctx: ServiceContext, provider: str, update: ProviderSettingsUpdate
) -> ProviderSettings:
    """Apply the fields given in ``update`` to a provider's settings.

    Raises:
        UnknownProviderError: no provider has that name.
        InvalidRequestError: the update is empty.
    """
    ctx.providers.get(provider)
    changes = update.model_dump(exclude_unset=True, mode="json")
    if "hardware_prices" in changes and changes["hardware_prices"] is None:
        changes["hardware_prices"] = {}
    if not changes:
        raise InvalidRequestError("Nothing to change: send at least one setting, e.g. webhook_allowed_ips.")
    return ProviderSettings.model_validate(await _merge(ctx, provider_scope(provider), changes))
