"""The databases tests run on: SQLite always, PostgreSQL when CLOUDTUNER_TEST_DATABASE_URL is set.

PostgreSQL tests do not touch the database that variable names: each test session creates a
database of its own next to it (``cloudtuner_test_<pid>``), resets its schema before every test
and drops it at the end, so two test runs on one server cannot disturb each other.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

POSTGRES_ENV = "CLOUDTUNER_TEST_DATABASE_URL"
_session_database: str | None = None


def postgres_url() -> str | None:
    """Return the async URL of the configured PostgreSQL database, or None if not configured."""
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        return None
    for plain in ("postgresql://", "postgres://"):
        if url.startswith(plain):
            return "postgresql+asyncpg://" + url[len(plain) :]
    return url


def database_params() -> list[object]:
    """Return pytest params for the databases to test on."""
    return [
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    ]


def _session_database_name() -> str:
    return f"cloudtuner_test_{os.getpid()}"


async def session_postgres_url() -> str | None:
    """Return the URL of this session's own PostgreSQL database, creating it on first use."""
    global _session_database
    base = postgres_url()
    if base is None:
        return None
    if _session_database is None:
        name = _session_database_name()
        engine = create_async_engine(base, isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as connection:
                await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                await connection.execute(text(f'CREATE DATABASE "{name}"'))
        finally:
            await engine.dispose()
        _session_database = make_url(base).set(database=name).render_as_string(hide_password=False)
    return _session_database


async def drop_session_database() -> None:
    """Drop this session's PostgreSQL database, if one was made."""
    base = postgres_url()
    if base is None or _session_database is None:
        return
    engine = create_async_engine(base, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{_session_database_name()}" WITH (FORCE)'))
    finally:
        await engine.dispose()


async def fresh_database_url(kind: str, tmp_path: Path) -> str:
    """Return the URL of an empty database of ``kind``; skip the test if it is not available."""
    if kind == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'cloudtuner.db'}"
    url = await session_postgres_url()
    if url is None:
        pytest.skip(f"set {POSTGRES_ENV} to run the PostgreSQL tests")
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            await connection.execute(text("CREATE SCHEMA public"))
    finally:
        await engine.dispose()
    return url
