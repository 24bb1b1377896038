"""Alembic migrations, run from code: the server applies them at start.

Migrations run in one transaction. Concurrent starts are safe: the second process waits (on
SQLite's write lock, or PostgreSQL's advisory lock) and then finds nothing left to do.

Alembic is imported only when there is something to do: :func:`upgrade` first reads the store's
revision with one SELECT and compares it with the newest revision of the migration scripts, which
:func:`head_revision` reads from their ``revision``/``down_revision`` lines without importing them.
Importing Alembic costs a start about 0.2 s (it loads the DDL support of every database).
"""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from cloudtuner.db.dialects import READ_ONLY_OPTION
from cloudtuner.db.engine import Database

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
VERSIONS_DIR = MIGRATIONS_DIR / "versions"
_READ_VERSIONS = text("SELECT version_num FROM alembic_version")  # Alembic's default version table

# A top-level `revision = ...` or `down_revision: str | None = ...` line of a migration script.
_REVISION_LINE = re.compile(r"^(revision|down_revision)\s*(?::[^=\n]*)?=\s*(.*?)\s*(?:#.*)?$", re.MULTILINE)


def alembic_config(connection: Connection | None = None) -> Config:
    """Return an Alembic config for cloudtuner's migrations, bound to ``connection`` if given."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def _script_revisions(path: Path) -> tuple[str, tuple[str, ...]] | None:
    """Return a script's revision and the revisions it follows; None if its lines cannot be read."""
    found: dict[str, object] = {}
    for name, value in _REVISION_LINE.findall(path.read_text(encoding="utf-8")):
        if name in found:
            return None
        try:
            found[name] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return None
    revision, down = found.get("revision"), found.get("down_revision")
    if not isinstance(revision, str) or "down_revision" not in found:
        return None
    if down is None:
        return revision, ()
    if isinstance(down, str):
        return revision, (down,)
    if isinstance(down, tuple | list) and all(isinstance(d, str) for d in down):
        return revision, tuple(down)
    return None


@functools.cache
def head_revision() -> str | None:
    """Return the newest revision of the migration scripts, read without importing them.

    Returns None when that cannot be told for sure (a script whose revision lines are not plain
    literals, several heads, none): callers then let Alembic decide, as it always can.
    """
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in VERSIONS_DIR.glob("*.py"):
        if path.name.startswith((".#", "__init__")):  # the files Alembic skips too
            continue
        read = _script_revisions(path)
        if read is None:
            return None
        revisions.add(read[0])
        parents.update(read[1])
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 and parents <= revisions else None


async def stored_revisions(db: Database) -> set[str] | None:
    """Return the revisions recorded in the store (one SELECT); None if it has no version table.

    Raises:
        OSError, SQLAlchemyError: the database cannot be opened.
    """
    async with db.engine.connect() as connection:
        # A read on SQLite: a deferred BEGIN, which never waits for the write lock.
        await connection.execution_options(**{READ_ONLY_OPTION: True})
        try:
            result = await connection.execute(_READ_VERSIONS)
        except DBAPIError:  # no such table: never migrated (or not a cloudtuner store)
            return None
        return {row[0] for row in result}


async def is_at_head(db: Database) -> bool:
    """Return True if the store is at the newest revision, without importing Alembic."""
    head = head_revision()
    return head is not None and await stored_revisions(db) == {head}


async def upgrade(db: Database, revision: str = "head") -> None:
    """Migrate the store up to ``revision`` (default: the newest).

    A store already at the newest revision costs one SELECT; Alembic runs only when it is behind.
    """
    if revision == "head" and await is_at_head(db):
        return

    def _run(connection: Connection) -> None:
        from alembic import command

        with db.dialect.migration_lock(connection):
            command.upgrade(alembic_config(connection), revision)

    async with db.engine.begin() as connection:
        await connection.run_sync(_run)


async def downgrade(db: Database, revision: str) -> None:
    """Migrate the store down to ``revision`` (``base`` removes every table)."""

    def _run(connection: Connection) -> None:
        from alembic import command

        with db.dialect.migration_lock(connection):
            command.downgrade(alembic_config(connection), revision)

    async with db.engine.begin() as connection:
        await connection.run_sync(_run)


async def current_revision(db: Database) -> str | None:
    """Return the revision the store is at, or None before the first migration."""

    def _read(connection: Connection) -> str | None:
        from alembic.runtime.migration import MigrationContext

        return MigrationContext.configure(connection).get_current_revision()

    async with db.engine.connect() as connection:
        return await connection.run_sync(_read)
