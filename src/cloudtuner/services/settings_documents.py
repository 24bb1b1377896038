"""Cloud settings and provider settings: JSON documents in the job store, edited over the API.

Reads are cached per process for ``CACHE_SECONDS``: dispatch and every webhook consult them, and
a change made through another server process shows within that time.
"""

from __future__ import annotations

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
    if cached is not None and time.monotonic() - cached[0] < CACHE_SECONDS:
        return dict(cached[1])
    async with ctx.db.read() as session:
        row = await session.get(SettingsDocumentRow, scope)
        document = dict(row.document) if row else {}
    ctx.settings_cache[scope] = (time.monotonic(), document)
    return dict(document)


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


def _cloud(ctx: ServiceContext, document: dict[str, Any]) -> CloudSettings:
    settings = CloudSettings.model_validate(document)
    settings.effective_public_url = settings.public_url or ctx.settings.public_url
    return settings


async def get_cloud_settings(ctx: ServiceContext) -> CloudSettings:
    """Return the Cloud settings, with defaults for what was never set."""
    return _cloud(ctx, await _read(ctx, CLOUD_SCOPE))


async def update_cloud_settings(ctx: ServiceContext, update: CloudSettingsUpdate) -> CloudSettings:
    """Apply the fields given in ``update``; an empty ``public_url`` ("") clears it."""
    changes = update.model_dump(exclude_unset=True, mode="json")
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
    if not changes:
        raise InvalidRequestError("Nothing to change: send at least one setting, e.g. webhook_allowed_ips.")
    return ProviderSettings.model_validate(await _merge(ctx, provider_scope(provider), changes))
