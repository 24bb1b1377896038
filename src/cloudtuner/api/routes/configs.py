"""Saved config routes: /api/configs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status

from cloudtuner.api.deps import Context, requires
from cloudtuner.core.permissions import Permission, Principal
from cloudtuner.schemas.common import ErrorResponse, SuccessResponse
from cloudtuner.schemas.configs import (
    ConfigHistoryResponse,
    SavedConfigListResponse,
    SavedConfigRequest,
    SavedConfigResponse,
)
from cloudtuner.services import configs as config_service

router = APIRouter(prefix="/api/configs", tags=["configs"])

ERRORS: dict[int | str, dict[str, object]] = {
    400: {"model": ErrorResponse, "description": "The name or config is not valid."},
    404: {"model": ErrorResponse, "description": "No such config."},
    422: {"model": ErrorResponse, "description": "A field is missing or has the wrong type."},
}


@router.get("", response_model=SavedConfigListResponse, summary="List saved configs")
async def list_configs(
    ctx: Context, _principal: Annotated[Principal, Depends(requires(Permission.CONFIG_VIEW))]
) -> SavedConfigListResponse:
    """Every saved config, by name."""
    return SavedConfigListResponse(configs=await config_service.list_configs(ctx))


@router.get("/{name}", response_model=SavedConfigResponse, responses=ERRORS, summary="Get a saved config")
async def get_config(
    name: str, ctx: Context, _principal: Annotated[Principal, Depends(requires(Permission.CONFIG_VIEW))]
) -> SavedConfigResponse:
    """A saved config with its datasets."""
    return await config_service.get_config(ctx, name)


@router.get("/{name}/history", response_model=ConfigHistoryResponse, responses=ERRORS, summary="A config's versions")
async def get_config_history(
    name: str,
    ctx: Context,
    _principal: Annotated[Principal, Depends(requires(Permission.CONFIG_VIEW))],
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> ConfigHistoryResponse:
    """The commits of the config history that changed this config, newest first."""
    return await config_service.config_history(ctx, name, limit)


@router.put("/{name}", response_model=SavedConfigResponse, responses=ERRORS, summary="Create or replace a config")
async def put_config(
    name: str,
    body: SavedConfigRequest,
    ctx: Context,
    response: Response,
    _principal: Annotated[Principal, Depends(requires(Permission.CONFIG_EDIT))],
) -> SavedConfigResponse:
    """Save a SimpleTuner config and its dataloader list; each save is a commit in the history."""
    saved, created = await config_service.put_config(ctx, name, body)
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return saved


@router.delete("/{name}", response_model=SuccessResponse, responses=ERRORS, summary="Delete a saved config")
async def delete_config(
    name: str, ctx: Context, _principal: Annotated[Principal, Depends(requires(Permission.CONFIG_EDIT))]
) -> SuccessResponse:
    """Delete a config; its history and the jobs that ran it keep their copies."""
    await config_service.delete_config(ctx, name)
    return SuccessResponse()
