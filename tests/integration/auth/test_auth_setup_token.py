"""The one-time setup token: logged once at start, creates the first admin once, then never works again."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from cloudtuner.db.tables import AuditEntryRow, SettingsDocumentRow
from cloudtuner.services import setup_token, users
from tests.fakes.scripted_provider import ScriptedProvider
from tests.integration.auth.support import PASSWORD, bearer
from tests.integration.conftest import RunningApp, make_settings, start_app

TOKEN_PATTERN = re.compile(r"setup_[A-Za-z0-9_-]{43}")


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Every log record of the test, at every level."""
    caplog.set_level(logging.DEBUG)
    return caplog


@pytest.fixture
async def fresh(tmp_path: Path, database_url: str, logs: pytest.LogCaptureFixture) -> AsyncIterator[RunningApp]:
    """A new server with no users (single-user mode, loopback), no scheduler, small sign-in limits."""
    settings = make_settings(tmp_path, database_url, scheduler_enabled=False, login_max_failures_per_address=4)
    async with start_app(settings, ScriptedProvider()) as running_app:
        yield running_app


def all_records(logs: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """Return the records logged so far, by the fixtures (the app's start) and the test."""
    return [*logs.get_records("setup"), *logs.records]


def announced_tokens(logs: pytest.LogCaptureFixture) -> list[str]:
    """Return the setup tokens found in the log, one per record that shows one."""
    return [match.group() for record in all_records(logs) for match in TOKEN_PATTERN.finditer(record.getMessage())]


def setup_body(token: str, username: str = "root", password: str = PASSWORD) -> dict[str, str]:
    return {"setup_token": token, "username": username, "password": password}


class Replies:
    """Every reply of a test, to search them for the token afterwards."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.texts: list[str] = []

    async def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        reply = await self.client.request(method, url, **kwargs)
        self.texts.append(f"{reply.headers}\n{reply.text}")
        return reply

    async def setup(self, token: str, **fields: str) -> httpx.Response:
        return await self.request("POST", "/api/auth/setup", json=setup_body(token, **fields))


async def test_the_logged_token_creates_the_first_admin_once(fresh: RunningApp, logs: pytest.LogCaptureFixture) -> None:
    tokens = announced_tokens(logs)
    assert len(tokens) == 1, "the token is announced in exactly one log line"
    token = tokens[0]
    [line] = [record for record in all_records(logs) if token in record.getMessage()]
    assert line.levelno == logging.INFO
    assert "curl -X POST http://127.0.0.1:" in line.getMessage() and "/api/auth/setup" in line.getMessage()
    replies = Replies(fresh.client)

    assert (await replies.request("GET", "/api/cloud/jobs")).status_code == 200  # single-user mode
    wrong = await replies.setup("setup_" + "x" * 43)
    assert wrong.status_code == 401 and wrong.json()["code"] == "invalid_setup_token"
    assert (await replies.setup(token[:-1])).json()["code"] == "invalid_setup_token"
    weak = await replies.setup(token, password="short")
    assert weak.status_code == 400 and weak.json()["code"] == "weak_password"  # the token is not spent

    created = await replies.setup(token, username="Root")
    assert created.status_code == 200, created.text
    assert created.json()["user"]["username"] == "root" and created.json()["user"]["role"] == "admin"

    anonymous = await replies.request("GET", "/api/cloud/jobs")
    assert anonymous.status_code == 401 and anonymous.json()["code"] == "authentication_required"
    again = await replies.setup(token, username="mallory")
    assert again.status_code == 409 and again.json()["code"] == "user_exists"
    assert "sign in" in again.json()["detail"]
    signed_in = await replies.request("POST", "/api/auth/login", json={"username": "root", "password": PASSWORD})
    assert signed_in.status_code == 200
    session = signed_in.json()["session_token"]
    me = await replies.request("GET", "/api/auth/me", headers=bearer(session))
    assert me.json()["mode"] == "multi_user" and me.json()["user"]["role"] == "admin"
    assert [user.username for user in await users.list_users(fresh.ctx)] == ["root"]

    entries = (await replies.request("GET", "/api/audit", headers=bearer(session), params={"limit": 100})).json()
    setups = [entry for entry in entries["entries"] if entry["action"] == "setup"]
    outcomes = sorted((entry["status"], entry["outcome"], (entry.get("detail") or {}).get("error")) for entry in setups)
    assert outcomes == [
        (200, "success", None),
        (400, "failed", "weak_password"),
        (401, "denied", "invalid_setup_token"),
        (401, "denied", "invalid_setup_token"),
        (409, "failed", "user_exists"),
    ]
    success = next(entry for entry in setups if entry["outcome"] == "success")
    assert success["actor_name"] == "root" and success["via"] == "setup_token"

    # The token shows in that one log line and nowhere else: no other record, no reply, no row.
    assert len(announced_tokens(logs)) == 1
    assert [record for record in all_records(logs) if token in record.getMessage()] == [line]
    assert not [text for text in replies.texts if token in text]
    async with fresh.ctx.db.read() as db_session:
        assert await db_session.get(SettingsDocumentRow, setup_token.SCOPE) is None  # spent: even the hash is gone
        stored = [repr(row.__dict__) for row in (await db_session.scalars(select(AuditEntryRow))).all()]
    assert not [text for text in stored if token in text]


async def test_refused_once_any_user_exists(tmp_path: Path, database_url: str, logs: pytest.LogCaptureFixture) -> None:
    settings = make_settings(tmp_path, database_url, scheduler_enabled=False)
    async with start_app(settings, ScriptedProvider()) as running:
        [token] = announced_tokens(logs)
        await users.create_user(running.ctx, "ops", PASSWORD, "researcher")  # like `cloudtuner admin create`
        refused = await running.client.post("/api/auth/setup", json=setup_body(token))
        assert refused.status_code == 409 and refused.json()["code"] == "user_exists"
        assert [user.username for user in await users.list_users(running.ctx)] == ["ops"]
    logs.clear()
    async with start_app(settings, ScriptedProvider()) as running:
        assert announced_tokens(logs) == []  # users exist: no token, and the old one's hash is gone
        async with running.ctx.db.read() as session:
            assert await session.get(SettingsDocumentRow, setup_token.SCOPE) is None
        refused = await running.client.post("/api/auth/setup", json=setup_body(token))
        assert refused.status_code == 409


async def test_an_expired_token_is_refused(fresh: RunningApp, logs: pytest.LogCaptureFixture) -> None:
    [token] = announced_tokens(logs)
    async with fresh.ctx.db.transaction() as session:
        row = await session.get(SettingsDocumentRow, setup_token.SCOPE)
        assert row is not None
        past = (fresh.ctx.clock.now() - timedelta(seconds=1)).isoformat()
        row.document = {"tokens": [{**entry, "expires_at": past} for entry in row.document["tokens"]]}
    reply = await fresh.client.post("/api/auth/setup", json=setup_body(token))
    assert reply.status_code == 401 and reply.json()["code"] == "invalid_setup_token"
    assert (await fresh.client.get("/api/cloud/jobs")).status_code == 200  # still single-user


async def test_two_requests_with_the_token_create_one_admin(fresh: RunningApp, logs: pytest.LogCaptureFixture) -> None:
    [token] = announced_tokens(logs)
    replies = await asyncio.gather(
        *(fresh.client.post("/api/auth/setup", json=setup_body(token, username=f"admin{i}")) for i in range(3))
    )
    statuses = sorted(reply.status_code for reply in replies)
    assert statuses[0] == 200 and all(status in (401, 409) for status in statuses[1:]), statuses
    assert len(await users.list_users(fresh.ctx)) == 1


async def test_wrong_tokens_are_throttled_per_address(fresh: RunningApp, logs: pytest.LogCaptureFixture) -> None:
    [token] = announced_tokens(logs)
    codes = [
        (await fresh.client.post("/api/auth/setup", json=setup_body(f"setup_guess{i}"))).json()["code"]
        for i in range(5)
    ]
    assert codes[:3] == ["invalid_setup_token"] * 3
    assert codes[-1] == "too_many_login_attempts"
    blocked = await fresh.client.post("/api/auth/setup", json=setup_body(token))
    assert blocked.status_code == 429 and "Retry-After" in blocked.headers  # even the right token, for a while
    assert (await fresh.client.get("/api/cloud/jobs")).status_code == 200


async def test_each_start_without_users_announces_a_new_token(
    tmp_path: Path, database_url: str, logs: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(tmp_path, database_url, scheduler_enabled=False)
    async with start_app(settings, ScriptedProvider()):
        pass
    async with start_app(settings, ScriptedProvider()) as running:
        first, second = announced_tokens(logs)
        assert first != second
        created = await running.client.post("/api/auth/setup", json=setup_body(first))  # any unexpired one works
        assert created.status_code == 200, created.text
        refused = await running.client.post("/api/auth/setup", json=setup_body(second, username="other"))
        assert refused.status_code == 409
