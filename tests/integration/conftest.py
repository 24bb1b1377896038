"""Integration fixtures: a real database (SQLite and PostgreSQL) and the app in process."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from cloudtuner.api.app import create_app
from cloudtuner.scheduler.loops import Scheduler
from cloudtuner.services.context import ServiceContext
from cloudtuner.settings import Settings
from tests.fakes.scripted_provider import ScriptedProvider
from tests.support.databases import database_params, fresh_database_url


@pytest.fixture(params=database_params())
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: each test runs once on SQLite and once on PostgreSQL."""
    return await fresh_database_url(request.param, tmp_path)


def make_settings(tmp_path: Path, database_url: str, **overrides: Any) -> Settings:
    """Return settings for a test server: its own data dir, fast scheduler ticks."""
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "database_url": database_url,
        "dispatch_interval_seconds": 0.05,
        "reconcile_interval_seconds": 0.05,
        "lease_seconds": 3.0,
        **overrides,
    }
    return Settings(**values)


@dataclass
class RunningApp:
    """An app with its lifespan entered, a client for it, and its scripted provider."""

    app: FastAPI
    client: httpx.AsyncClient
    provider: ScriptedProvider

    @property
    def ctx(self) -> ServiceContext:
        ctx: ServiceContext = self.app.state.ctx
        return ctx

    @property
    def scheduler(self) -> Scheduler:
        scheduler: Scheduler = self.app.state.scheduler
        return scheduler


@contextlib.asynccontextmanager
async def start_app(settings: Settings, provider: ScriptedProvider) -> AsyncIterator[RunningApp]:
    """Yield a running app; stop it afterwards."""
    app = create_app(settings, providers=[provider])
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://cloudtuner.test") as client:
            yield RunningApp(app=app, client=client, provider=provider)


@pytest.fixture
async def running(tmp_path: Path, database_url: str) -> AsyncIterator[RunningApp]:
    """The app with its scheduler running."""
    async with start_app(make_settings(tmp_path, database_url), ScriptedProvider()) as running_app:
        yield running_app


@pytest.fixture
async def manual(tmp_path: Path, database_url: str) -> AsyncIterator[RunningApp]:
    """The app with no background scheduler: tests drive each scheduler round themselves."""
    settings = make_settings(tmp_path, database_url, scheduler_enabled=False)
    async with start_app(settings, ScriptedProvider()) as running_app:
        yield running_app


INLINE_JOB: dict[str, Any] = {
    "config": {
        "--model_family": "flux",
        "--model_type": "lora",
        "--pretrained_model_name_or_path": "black-forest-labs/FLUX.1-dev",
        "--output_dir": "/outputs/flux-lora",
        "--max_train_steps": 4,
        "--lora_rank": 16,
        "--scripted_seconds": 0.3,
    },
    "dataloader_config": [
        {
            "id": "training-images",
            "type": "local",
            "dataset_type": "image",
            "instance_data_dir": "/data/datasets/my-dataset",
            "caption_strategy": "textfile",
            "resolution": 1024,
        }
    ],
}


def inline_job(**config_overrides: Any) -> dict[str, Any]:
    """Return the seeds' inline submission with some config arguments changed."""
    return {**INLINE_JOB, "config": {**INLINE_JOB["config"], **config_overrides}}
