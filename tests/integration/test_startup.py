"""Start-up cost: a store at the newest revision is checked with one SELECT, without Alembic."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory

from cloudtuner.api.app import create_app
from cloudtuner.api.serve import prepare_store
from cloudtuner.db import migrate
from cloudtuner.db.engine import Database
from tests.integration.conftest import make_settings

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def versions_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty folder of migration scripts that head_revision() reads instead of the real one."""
    folder = tmp_path / "versions"
    folder.mkdir()
    monkeypatch.setattr(migrate, "VERSIONS_DIR", folder)
    migrate.head_revision.cache_clear()
    yield folder
    migrate.head_revision.cache_clear()


def script(folder: Path, name: str, body: str) -> None:
    (folder / name).write_text(textwrap.dedent(body), encoding="utf-8")


def test_head_revision_is_alembics_head() -> None:
    heads = ScriptDirectory.from_config(migrate.alembic_config()).get_heads()
    assert heads == [migrate.head_revision()]


def test_head_revision_follows_the_chain(versions_dir: Path) -> None:
    script(versions_dir, "b.py", 'revision: str = "b"\ndown_revision: str | None = "a"  # after a\n')
    script(versions_dir, "a.py", '"""Revision ID: a"""\nrevision = "a"\ndown_revision = None\n')
    script(versions_dir, "c.py", "revision = 'c'\ndown_revision: tuple[str, ...] = ('a', 'b')\n")
    script(versions_dir, ".#c.py", "junk from an editor")
    assert migrate.head_revision() == "c"


@pytest.mark.parametrize(
    "scripts",
    [
        {"a.py": "revision = 'a'\ndown_revision = None\n", "b.py": "revision = 'b'\ndown_revision = None\n"},
        {"a.py": "revision = 'a'\ndown_revision = None\n", "b.py": "revision = 'b'\ndown_revision = (\n  'a',\n)\n"},
        {"a.py": "revision = 'a'\n"},
        {"a.py": "revision = make_id()\ndown_revision = None\n"},
        {"a.py": "revision = 'a'\ndown_revision = 'missing'\n"},
        {},
    ],
    ids=["two-heads", "multi-line", "no-down-revision", "not-a-literal", "unknown-parent", "none"],
)
def test_head_revision_is_none_when_unsure(versions_dir: Path, scripts: dict[str, str]) -> None:
    for name, body in scripts.items():
        script(versions_dir, name, body)
    assert migrate.head_revision() is None


async def test_upgrade_skips_alembic_at_head(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import alembic.command

    db = Database(database_url)
    try:
        assert await migrate.stored_revisions(db) is None
        assert not await migrate.is_at_head(db)
        await migrate.upgrade(db)
        assert await migrate.stored_revisions(db) == {migrate.head_revision()}
        assert await migrate.is_at_head(db)

        def refuse(*_args: object) -> None:
            raise AssertionError("alembic ran on a store at head")

        monkeypatch.setattr(alembic.command, "upgrade", refuse)
        await migrate.upgrade(db)
    finally:
        await db.dispose()


async def test_a_store_behind_head_is_migrated(database_url: str) -> None:
    db = Database(database_url)
    try:
        await migrate.upgrade(db, "0001")
        assert await migrate.stored_revisions(db) == {"0001"}
        assert not await migrate.is_at_head(db)
        await migrate.upgrade(db)
        assert await migrate.current_revision(db) == migrate.head_revision()
    finally:
        await db.dispose()


async def test_the_lifespan_migrates_an_app_built_directly(tmp_path: Path, database_url: str) -> None:
    app = create_app(make_settings(tmp_path, database_url, scheduler_enabled=False))
    async with app.router.lifespan_context(app):
        assert await migrate.is_at_head(app.state.ctx.db)


async def test_the_lifespan_trusts_a_prepared_store(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def refuse(*_args: object) -> None:
        raise AssertionError("migrated twice")

    settings = make_settings(tmp_path, database_url, scheduler_enabled=False)
    assert await prepare_store(settings) is None  # what `cloudtuner server` does before serving
    app = create_app(settings)
    app.state.store_prepared = True
    monkeypatch.setattr(migrate, "upgrade", refuse)
    async with app.router.lifespan_context(app):
        pass


async def test_preparing_a_store_at_head_does_not_import_alembic(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    code = textwrap.dedent(
        f"""
        import asyncio, sys
        from cloudtuner.api.serve import prepare_store
        from cloudtuner.settings import Settings
        problem = asyncio.run(prepare_store(Settings(data_dir={str(data_dir)!r})))
        print(problem, "alembic" in sys.modules)
        """
    )

    def run() -> str:
        env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT)}
        result = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, check=True
        )
        return result.stdout.strip()

    assert run() == "None True"  # a new store: Alembic creates it
    assert run() == "None False"  # at head: one SELECT
