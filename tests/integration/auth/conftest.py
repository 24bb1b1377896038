"""Fixtures for the auth tests: the app in multi-user mode, with an admin signed in."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.fakes.scripted_provider import ScriptedProvider
from tests.integration.auth.support import Team, start_team
from tests.integration.conftest import RunningApp, make_settings, start_app


@pytest.fixture
async def team(running: RunningApp) -> Team:
    """The app with its scheduler, in multi-user mode, the admin signed in."""
    return await start_team(running)


@pytest.fixture
async def quiet_team(tmp_path: Path, database_url: str) -> AsyncIterator[Team]:
    """Like ``team``, with no background scheduler and login limits small enough to reach."""
    settings = make_settings(
        tmp_path, database_url, scheduler_enabled=False, login_max_failures=3, login_max_failures_per_address=6
    )
    async with start_app(settings, ScriptedProvider()) as running_app:
        yield await start_team(running_app)
