"""Fixtures shared by every tier."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator

import pytest

from tests.support.databases import drop_session_database

# Tests never read the developer's environment for cloudtuner settings or provider tokens.
for name in list(os.environ):
    if name.startswith("CLOUDTUNER_") and name != "CLOUDTUNER_TEST_DATABASE_URL":
        os.environ.pop(name)
for name in ("REPLICATE_API_TOKEN", "HF_TOKEN"):
    os.environ.pop(name, None)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session", autouse=True)
def _drop_postgres_session_database() -> Iterator[None]:
    """Drop the PostgreSQL database this test session made, once every test is done."""
    yield
    asyncio.run(drop_session_database())
