"""What differs between SQLite and PostgreSQL, as one object per database.

Services never check which database they talk to; anything that differs lives here. Each
dialect imports SQLAlchemy's support for its database itself, when first used, so that a SQLite
server never loads PostgreSQL's (and the reverse).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Connection, Table, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.dml import Insert
from sqlalchemy.util import await_only

from cloudtuner.core.errors import ConfigurationError
from cloudtuner.db import inline_sqlite, wal_checkpoints

READ_ONLY_OPTION = "cloudtuner_read_only"
_MIGRATION_LOCK_KEY = 0x636C6F7564  # "cloud": the advisory lock id held while migrating


class StoreDialect:
    """The behaviour a database must supply to the job store."""

    name = "base"
    single_writer = False
    """True if the database runs one write transaction at a time (SQLite)."""

    def engine_options(self) -> dict[str, Any]:
        """Return keyword arguments for ``create_async_engine``."""
        return {}

    def install(self, engine: AsyncEngine) -> None:
        """Attach connection-level setup to ``engine``."""

    def close(self) -> None:
        """Stop what ``install`` started (called when the store is disposed)."""

    def insert(self, table: Table) -> Insert:
        """Return an INSERT for ``table`` that supports ``on_conflict_do_nothing``."""
        raise NotImplementedError

    @contextlib.contextmanager
    def migration_lock(self, connection: Connection) -> Iterator[None]:
        """Hold a lock, across processes, for as long as migrations run."""
        yield


class SqliteDialect(StoreDialect):
    """SQLite: WAL, foreign keys on, a busy timeout, and writes that take the lock up front.

    Write transactions begin with ``BEGIN IMMEDIATE``, so two writers queue on the busy timeout
    instead of failing when a read lock cannot be upgraded. Sessions on the read-only engine begin
    deferred and never block writers (WAL). Migrations run in one such transaction, which is all
    the locking they need.
    """

    name = "sqlite"
    single_writer = True
    busy_timeout_ms = 30_000

    def __init__(self, database: str | None = None) -> None:
        self.database = database or ":memory:"
        plain_path = self.database != ":memory:" and not self.database.startswith("file:")
        self.checkpointer = wal_checkpoints.WalCheckpointer(self.database) if plain_path else None
        """Checkpoints the WAL off the event loop (``db/wal_checkpoints.py``); None for a database in
        memory or named by a ``file:`` URI (whose options the checkpointer's connection would lack),
        which keep SQLite's own checkpoints."""

    def engine_options(self) -> dict[str, Any]:
        # Statements run on the event loop's thread (see db.inline_sqlite for why that is safe here).
        return {"async_creator": inline_sqlite.connector(self.database, timeout_seconds=self.busy_timeout_ms / 1000)}

    def install(self, engine: AsyncEngine) -> None:
        busy_timeout_ms = self.busy_timeout_ms
        checkpointer = self.checkpointer

        @event.listens_for(engine.sync_engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            # Let SQLAlchemy's "begin" event, below, issue BEGIN itself.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
            enable_wal(cursor, busy_timeout_ms / 1000)
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            if checkpointer is not None:
                cursor.execute(f"PRAGMA wal_autocheckpoint={wal_checkpoints.FALLBACK_AUTOCHECKPOINT_PAGES}")
                checkpointer.start()
            cursor.close()

        @event.listens_for(engine.sync_engine, "begin")
        def _on_begin(connection: Connection) -> None:
            if connection.get_execution_options().get(READ_ONLY_OPTION):
                connection.exec_driver_sql("BEGIN")
            else:
                connection.exec_driver_sql("BEGIN IMMEDIATE")

    def close(self) -> None:
        if self.checkpointer is not None:
            self.checkpointer.stop()

    def insert(self, table: Table) -> Insert:
        from sqlalchemy.dialects.sqlite import insert

        return insert(table)


def enable_wal(cursor: Any, timeout_seconds: float) -> None:
    """Switch the database to WAL, waiting while another connection holds a lock.

    SQLite can refuse ``PRAGMA journal_mode=WAL`` with "database is locked" at once, without its
    busy handler, while another connection is writing (several servers, or migrations, starting
    on a new file at the same time); it is retried here until the busy timeout.
    """
    deadline = time.monotonic() + timeout_seconds
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            await_only(asyncio.sleep(0.05))  # the hook runs in SQLAlchemy's async bridge: yield, do not block


class PostgresDialect(StoreDialect):
    """PostgreSQL through asyncpg; migrations serialised by an advisory lock."""

    name = "postgresql"

    def engine_options(self) -> dict[str, Any]:
        return {"pool_pre_ping": True, "pool_size": 10, "max_overflow": 10}

    def insert(self, table: Table) -> Insert:
        from sqlalchemy.dialects.postgresql import insert

        return insert(table)

    @contextlib.contextmanager
    def migration_lock(self, connection: Connection) -> Iterator[None]:
        # Held until the migrating transaction commits or rolls back, never released before: a
        # process waiting for it must find the migrations committed, not half done.
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
        yield


def dialect_for_url(url: str) -> StoreDialect:
    """Return the StoreDialect for an async SQLAlchemy URL.

    Raises:
        ConfigurationError: the URL is malformed or names a database cloudtuner does not support.
    """
    try:
        backend = make_url(url).get_backend_name()
    except ArgumentError:
        raise ConfigurationError(
            "CLOUDTUNER_DATABASE_URL is not a database URL; use postgresql://user@host/db, or leave it "
            "unset for SQLite in the data dir."
        ) from None
    if backend == "sqlite":
        return SqliteDialect(make_url(url).database)
    if backend == "postgresql":
        return PostgresDialect()
    raise ConfigurationError(
        f"CLOUDTUNER_DATABASE_URL names {backend!r}, which cloudtuner does not support: use PostgreSQL "
        "(postgresql://user@host/db) or SQLite (the default)."
    )
