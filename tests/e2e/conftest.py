"""E2E fixtures: the database a server runs on, the servers of a test, and their logs on failure."""

from __future__ import annotations

import asyncio
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import ServerFactory, ServerProcess
from tests.support.databases import database_params, fresh_database_url

_SERVERS = pytest.StashKey[ServerFactory]()


@pytest.fixture(params=database_params())
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str | None:
    """The job store of the test's servers: None for the server's default SQLite file in its data
    dir, or an empty PostgreSQL database (skipped when CLOUDTUNER_TEST_DATABASE_URL is not set)."""
    if request.param == "sqlite":
        return None
    return asyncio.run(fresh_database_url("postgresql", tmp_path))


@pytest.fixture
def postgres_database_url(tmp_path: Path) -> str:
    """An empty PostgreSQL database; the test is skipped without one."""
    return asyncio.run(fresh_database_url("postgresql", tmp_path))


@pytest.fixture
def servers(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerFactory]:
    """Makes the test's server processes, on ``database_url`` when the test asks for it; kills
    every one still running when the test ends, pass or fail."""
    url: str | None = None
    if "database_url" in request.fixturenames:
        url = request.getfixturevalue("database_url")
    factory = ServerFactory(tmp_path / "servers", url)
    request.node.stash[_SERVERS] = factory
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture
def server(servers: ServerFactory) -> ServerProcess:
    """One running server."""
    return servers.start()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the log of every server a failed test started to its report."""
    del call
    report = yield
    factory = item.stash.get(_SERVERS, None)
    if report.failed and factory is not None:
        for title, text in factory.logs():
            report.sections.append((title, text))
    return report
