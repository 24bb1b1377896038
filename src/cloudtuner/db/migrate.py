"""Alembic migrations, run from code: the server applies them at start.

Migrations run in one transaction. Concurrent starts are safe: the second process waits (on
SQLite's write lock, or PostgreSQL's advisory lock) and then finds nothing left to do.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection

from cloudtuner.db.engine import Database

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def alembic_config(connection: Connection | None = None) -> Config:
    """Return an Alembic config for cloudtuner's migrations, bound to ``connection`` if given."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


async def upgrade(db: Database, revision: str = "head") -> None:
    """Migrate the store up to ``revision`` (default: the newest)."""

    def _run(connection: Connection) -> None:
        with db.dialect.migration_lock(connection):
            command.upgrade(alembic_config(connection), revision)

    async with db.engine.begin() as connection:
        await connection.run_sync(_run)


async def downgrade(db: Database, revision: str) -> None:
    """Migrate the store down to ``revision`` (``base`` removes every table)."""

    def _run(connection: Connection) -> None:
        with db.dialect.migration_lock(connection):
            command.downgrade(alembic_config(connection), revision)

    async with db.engine.begin() as connection:
        await connection.run_sync(_run)


async def current_revision(db: Database) -> str | None:
    """Return the revision the store is at, or None before the first migration."""

    def _read(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    async with db.engine.connect() as connection:
        return await connection.run_sync(_read)
