"""Saved configs: named SimpleTuner configs with their datasets, versioned in git."""

from __future__ import annotations

import json
import re
from typing import Any

from sqlalchemy import select

from cloudtuner.core.errors import ConfigNotFoundError, InvalidConfigError
from cloudtuner.db.tables import SavedConfigRow
from cloudtuner.schemas.configs import (
    CONFIG_NAME_PATTERN,
    ConfigHistoryEntry,
    ConfigHistoryResponse,
    SavedConfigRequest,
    SavedConfigResponse,
    SavedConfigSummary,
)
from cloudtuner.services.config_history import CONFIG_FILE, DATALOADER_FILE
from cloudtuner.services.context import ServiceContext

_NAME_RE = re.compile(CONFIG_NAME_PATTERN)


def check_config_name(name: str) -> str:
    """Return ``name`` if it can name a saved config.

    Raises:
        InvalidConfigError: the name is empty, too long or has characters other than letters,
            digits, '.', '_' and '-', or starts with one of the last three.
    """
    if not _NAME_RE.match(name):
        raise InvalidConfigError(
            f"{name!r} cannot name a config: use 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit."
        )
    return name


def _argument(config: dict[str, Any], name: str) -> str | None:
    value = config.get(f"--{name}", config.get(name))
    return None if value is None else str(value)


def _summary_fields(row: SavedConfigRow) -> dict[str, Any]:
    return {
        "name": row.name,
        "description": row.description,
        "model_family": _argument(row.config, "model_family"),
        "model_type": _argument(row.config, "model_type"),
        "datasets": len(row.dataloader_config),
        "latest_commit": row.latest_commit,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


def _response(row: SavedConfigRow) -> SavedConfigResponse:
    return SavedConfigResponse.model_validate(
        {**_summary_fields(row), "config": row.config, "dataloader_config": row.dataloader_config}
    )


async def list_configs(ctx: ServiceContext) -> list[SavedConfigSummary]:
    """Return every saved config, by name."""
    async with ctx.db.read() as session:
        rows = (await session.scalars(select(SavedConfigRow).order_by(SavedConfigRow.name))).all()
        return [SavedConfigSummary.model_validate(_summary_fields(row)) for row in rows]


async def find_config(ctx: ServiceContext, name: str) -> SavedConfigRow | None:
    """Return the saved config called ``name``, or None."""
    async with ctx.db.read() as session:
        return await session.get(SavedConfigRow, name)


async def get_config(ctx: ServiceContext, name: str) -> SavedConfigResponse:
    """Return the saved config called ``name``.

    Raises:
        ConfigNotFoundError: there is none.
    """
    row = await find_config(ctx, name)
    if row is None:
        raise ConfigNotFoundError(f"No saved config is called {name!r}. List them with GET /api/configs.")
    return _response(row)


def config_files(config: dict[str, Any], dataloader: list[dict[str, Any]]) -> dict[str, bytes]:
    """Return the files SimpleTuner reads for this config, as the history stores them."""
    return {
        CONFIG_FILE: (json.dumps(config, indent=2, sort_keys=True) + "\n").encode(),
        DATALOADER_FILE: (json.dumps(dataloader, indent=2) + "\n").encode(),
    }


async def put_config(ctx: ServiceContext, name: str, request: SavedConfigRequest) -> tuple[SavedConfigResponse, bool]:
    """Create or replace config ``name``, commit it to the history; return it and whether it is new.

    Raises:
        InvalidConfigError: the name is not valid, or a dataset id appears twice.
    """
    check_config_name(name)
    dataloader = [dataset.model_dump(exclude_none=True) for dataset in request.dataloader_config]
    ids = [dataset["id"] for dataset in dataloader]
    duplicates = sorted({dataset_id for dataset_id in ids if ids.count(dataset_id) > 1})
    if duplicates:
        raise InvalidConfigError(f"Dataset ids must be unique; repeated: {', '.join(duplicates)}.")
    commit = await ctx.config_history.record(name, config_files(request.config, dataloader), f"Save {name}")
    now = ctx.clock.now()
    async with ctx.db.transaction() as session:
        row = await session.get(SavedConfigRow, name, with_for_update=True)
        created = row is None
        if row is None:
            row = SavedConfigRow(name=name, created_at=now)
            session.add(row)
        row.config = request.config
        row.dataloader_config = dataloader
        row.description = request.description
        row.latest_commit = commit
        row.updated_at = now
    return _response(row), created


async def delete_config(ctx: ServiceContext, name: str) -> None:
    """Delete config ``name``; its history stays, and jobs that ran it keep their copy.

    Raises:
        ConfigNotFoundError: there is none.
    """
    async with ctx.db.transaction() as session:
        row = await session.get(SavedConfigRow, name, with_for_update=True)
        if row is None:
            raise ConfigNotFoundError(f"No saved config is called {name!r}.")
        await session.delete(row)
    await ctx.config_history.record(name, None, f"Delete {name}")


async def config_history(ctx: ServiceContext, name: str, limit: int = 50) -> ConfigHistoryResponse:
    """Return the saved versions of config ``name``, newest first.

    Raises:
        ConfigNotFoundError: the config never existed.
    """
    check_config_name(name)
    entries = await ctx.config_history.history(name, limit)
    if not entries:
        raise ConfigNotFoundError(f"No saved config has ever been called {name!r}.")
    return ConfigHistoryResponse(
        name=name,
        history=[ConfigHistoryEntry(commit=e.commit, message=e.message, created_at=e.created_at) for e in entries],
    )
