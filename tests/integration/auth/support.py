"""Helpers for tests of users, sessions and keys: an app in multi-user mode, an admin signed in."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

from cloudtuner.services import users
from cloudtuner.services.context import ServiceContext
from tests.integration.conftest import RunningApp

ADMIN = "admin"
PASSWORD = "correct horse battery staple"


def bearer(token: str) -> dict[str, str]:
    """Return the header that sends ``token``."""
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Team:
    """A multi-user app: its client, and an admin's session token."""

    running: RunningApp
    admin_token: str = ""
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def client(self) -> httpx.AsyncClient:
        return self.running.client

    @property
    def ctx(self) -> ServiceContext:
        return self.running.ctx

    async def login(self, username: str, password: str = PASSWORD) -> str:
        """Sign in; return the session token."""
        reply = await self.client.post("/api/auth/login", json={"username": username, "password": password})
        assert reply.status_code == 200, reply.text
        token: str = reply.json()["session_token"]
        self.client.cookies.clear()  # tests send tokens explicitly; cookies are tested on their own
        return token

    async def user(self, username: str, role: str = "researcher") -> str:
        """Create a user (through the service) and sign them in; return their session token."""
        await users.create_user(self.ctx, username, PASSWORD, role)
        self.tokens[username] = await self.login(username)
        return self.tokens[username]

    async def key(self, token: str, scopes: list[str], name: str = "ci-pipeline", **extra: Any) -> str:
        """Create an API key with ``token``; return the whole key."""
        reply = await self.client.post(
            "/api/cloud/auth/api-keys",
            headers=bearer(token),
            json={"name": name, "scoped_permissions": scopes, **extra},
        )
        assert reply.status_code == 201, reply.text
        key: str = reply.json()["key"]
        return key


async def start_team(running: RunningApp) -> Team:
    """Create the admin and sign them in."""
    team = Team(running)
    await users.create_user(running.ctx, ADMIN, PASSWORD, "admin")
    team.admin_token = await team.login(ADMIN)
    team.tokens[ADMIN] = team.admin_token
    return team
