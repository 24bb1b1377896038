"""The databases tests run on: SQLite always, PostgreSQL when CLOUDTUNER_TEST_DATABASE_URL is set."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

POSTGRES_ENV = "CLOUDTUNER_TEST_DATABASE_URL"


def postgres_url() -> str | None:
    """Return the async URL of the test PostgreSQL database, or None if not configured."""
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


async def fresh_database_url(kind: str, tmp_path: Path) -> str:
    """Return the URL of an empty database of ``kind``; skip the test if it is not available."""
    if kind == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'cloudtuner.db'}"
    url = postgres_url()
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
