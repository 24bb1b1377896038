"""A server on a non-loopback address starts only once an admin exists."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloudtuner.api.app import create_app
from cloudtuner.core.errors import ConfigurationError
from cloudtuner.services import users
from tests.fakes.scripted_provider import ScriptedProvider
from tests.integration.auth.support import PASSWORD
from tests.integration.conftest import make_settings, start_app


async def test_a_public_address_needs_an_admin(tmp_path: Path, database_url: str) -> None:
    public = make_settings(tmp_path, database_url, host="0.0.0.0", scheduler_enabled=False)
    app = create_app(public, providers=[ScriptedProvider()])
    with pytest.raises(ConfigurationError, match="cloudtuner admin create USERNAME --password-stdin"):
        async with app.router.lifespan_context(app):
            pass

    loopback = make_settings(tmp_path, database_url, scheduler_enabled=False)
    async with start_app(loopback, ScriptedProvider()) as running:
        await users.create_user(running.ctx, "ops", PASSWORD, "researcher")
    with pytest.raises(ConfigurationError):  # a user, but no admin
        async with start_app(public, ScriptedProvider()):
            pass

    async with start_app(loopback, ScriptedProvider()) as running:
        await users.create_user(running.ctx, "root", PASSWORD, "admin")
    async with start_app(public, ScriptedProvider()) as running:
        assert (await running.client.get("/api/cloud/jobs")).status_code == 401
        assert (await running.client.get("/api/health")).status_code == 200
