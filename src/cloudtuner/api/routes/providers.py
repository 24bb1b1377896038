"""Provider and Cloud settings routes: /api/cloud/providers/..., /api/cloud/settings."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from cloudtuner.api.deps import Context, requires
from cloudtuner.core.permissions import Permission, Principal
from cloudtuner.schemas.common import ErrorResponse
from cloudtuner.schemas.settings import (
    CloudSettings,
    CloudSettingsUpdate,
    ProviderSettingsResponse,
    ProviderSettingsUpdate,
    SaveTokenRequest,
    TokenStatus,
)
from cloudtuner.services import provider_admin, settings_documents

router = APIRouter(tags=["providers and settings"])

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Unknown provider or invalid setting."},
    422: {"model": ErrorResponse, "description": "A field is missing or has the wrong type."},
}
ViewProviders = Annotated[Principal, Depends(requires(Permission.PROVIDER_VIEW, Permission.PROVIDER_MANAGE))]
ManageProviders = Annotated[Principal, Depends(requires(Permission.PROVIDER_MANAGE))]


@router.get("/api/cloud/settings", response_model=CloudSettings, summary="Cloud settings")
async def get_cloud_settings(ctx: Context, _principal: ViewProviders) -> CloudSettings:
    """Upload consent mode, public (webhook) URL and trusted proxies."""
    return await settings_documents.get_cloud_settings(ctx)


@router.put("/api/cloud/settings", response_model=CloudSettings, responses=ERRORS, summary="Change Cloud settings")
async def put_cloud_settings(ctx: Context, body: CloudSettingsUpdate, _principal: ManageProviders) -> CloudSettings:
    """Change the fields given, e.g. `{"upload_consent": "always_allow"}`; the rest keep their values."""
    return await settings_documents.update_cloud_settings(ctx, body)


@router.get("/api/cloud/providers", summary="List providers")
async def list_providers(ctx: Context, _principal: ViewProviders) -> dict[str, list[ProviderSettingsResponse]]:
    """Every provider this server can send jobs to, with token status and capabilities."""
    return {"providers": [await provider_admin.provider_overview(ctx, name) for name in ctx.providers.names]}


@router.get(
    "/api/cloud/providers/{provider}",
    response_model=ProviderSettingsResponse,
    responses=ERRORS,
    summary="A provider's settings",
)
async def get_provider(provider: str, ctx: Context, _principal: ViewProviders) -> ProviderSettingsResponse:
    """Settings, token status (never the token) and capabilities of one provider."""
    return await provider_admin.provider_overview(ctx, provider)


@router.put(
    "/api/cloud/providers/{provider}",
    response_model=ProviderSettingsResponse,
    responses=ERRORS,
    summary="Change a provider's settings",
)
async def put_provider(
    provider: str, body: ProviderSettingsUpdate, ctx: Context, _principal: ManageProviders
) -> ProviderSettingsResponse:
    """Change the fields given, e.g. `{"webhook_allowed_ips": ["34.82.0.0/16", "35.185.0.0/16"]}`."""
    return await provider_admin.change_provider_settings(ctx, provider, body)


@router.put("/api/cloud/providers/{provider}/token", responses=ERRORS, summary="Save a provider token")
async def put_token(provider: str, body: SaveTokenRequest, ctx: Context, _principal: ManageProviders) -> dict[str, Any]:
    """Store the token encrypted on this server. It is never shown again, in any reply or log."""
    status = await provider_admin.save_token(ctx, provider, body.token)
    return {"success": True, "provider": provider, "token": status.model_dump()}


@router.delete("/api/cloud/providers/{provider}/token", responses=ERRORS, summary="Delete a saved provider token")
async def delete_token(provider: str, ctx: Context, _principal: ManageProviders) -> dict[str, Any]:
    """Forget the saved token; a token from the environment, if any, applies again."""
    status: TokenStatus = await provider_admin.delete_token(ctx, provider)
    return {"success": True, "provider": provider, "token": status.model_dump()}


@router.get("/api/cloud/providers/replicate/versions", responses=ERRORS, summary="Replicate trainer versions")
async def replicate_versions(
    ctx: Context,
    _principal: ViewProviders,
    model: Annotated[str | None, Query(description="Another trainer model, owner/name.")] = None,
) -> dict[str, Any]:
    """The trainer model's versions, newest first; jobs use the newest unless one is pinned."""
    return await provider_admin.replicate_versions(ctx, model)


@router.get("/api/cloud/providers/{provider}/billing", responses=ERRORS, summary="Spend at a provider")
async def billing(provider: str, ctx: Context, _principal: ViewProviders) -> dict[str, Any]:
    """What this server's jobs cost at the provider. Replicate has no balance API, so none is shown."""
    return await provider_admin.spend_report(ctx, provider)


@router.get("/api/cloud/providers/{provider}/validate", responses=ERRORS, summary="Check a provider's credentials")
async def validate(provider: str, ctx: Context, _principal: ViewProviders) -> dict[str, Any]:
    """Ask the provider who the token belongs to. `valid: false` comes with what to fix."""
    return await provider_admin.validate_provider(ctx, provider)
