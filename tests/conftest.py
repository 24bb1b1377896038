"""Fixtures shared by every tier."""

from __future__ import annotations

import os

import pytest

# Tests never read the developer's environment for cloudtuner settings or provider tokens.
for name in list(os.environ):
    if name.startswith("CLOUDTUNER_") and name != "CLOUDTUNER_TEST_DATABASE_URL":
        os.environ.pop(name)
for name in ("REPLICATE_API_TOKEN", "HF_TOKEN"):
    os.environ.pop(name, None)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
