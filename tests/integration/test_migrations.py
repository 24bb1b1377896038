"""Migrations up and down on both databases; the migrated schema matches the tables."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect

from cloudtuner.db import migrate
from cloudtuner.db.engine import Database
from cloudtuner.db.tables import Base

TABLES = {
    "jobs",
    "workers",
    "worker_assignments",
    "job_events",
    "job_logs",
    "saved_configs",
    "idempotency_keys",
    "settings_documents",
    "secrets",
    "webhook_receipts",
    "storage_credentials",
    "users",
    "user_sessions",
    "api_keys",
    "login_throttle",
    "audit_log",
    "audit_state",
    "spending_scopes",
    "artifacts",
    "job_deliveries",
}


async def table_names(db: Database) -> set[str]:
    async with db.engine.connect() as connection:
        names = await connection.run_sync(lambda sync: set(inspect(sync).get_table_names()))
    return names - {"alembic_version"}


async def test_up_down_up(database_url: str) -> None:
    db = Database(database_url)
    try:
        assert await migrate.current_revision(db) is None
        await migrate.upgrade(db)
        assert await migrate.current_revision(db) == "0009"
        assert await table_names(db) == TABLES
        await migrate.upgrade(db)  # a second start finds nothing to do
        await migrate.downgrade(db, "base")
        assert await migrate.current_revision(db) is None
        assert await table_names(db) == set()
        await migrate.upgrade(db)
        assert await table_names(db) == TABLES
    finally:
        await db.dispose()


async def test_migrated_schema_matches_the_tables(database_url: str) -> None:
    db = Database(database_url)
    try:
        await migrate.upgrade(db)

        def differences(connection: Connection) -> list[Any]:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return list(compare_metadata(context, Base.metadata))

        async with db.engine.connect() as connection:
            diff = await connection.run_sync(differences)
        assert diff == [], f"tables.py and the migrations disagree: {diff}"
    finally:
        await db.dispose()


async def test_concurrent_starts_migrate_once(database_url: str) -> None:
    import asyncio

    databases = [Database(database_url) for _ in range(3)]
    try:
        await asyncio.gather(*(migrate.upgrade(db) for db in databases))
        assert await migrate.current_revision(databases[0]) == "0009"
    finally:
        for db in databases:
            await db.dispose()


async def test_teams_migration_keeps_users_and_jobs(database_url: str) -> None:
    """0009 adds ``team`` to users and jobs (empty for existing rows) and takes it away again."""
    from sqlalchemy import text

    db = Database(database_url)
    try:
        await migrate.upgrade(db, "0008")
        async with db.engine.begin() as connection:
            await connection.execute(
                text(
                    "INSERT INTO users (id, username, password_hash, role, active, created_at, updated_at) "
                    "VALUES ('u1', 'alice', 'x', 'lead', true, '2026-01-01 00:00:00', '2026-01-01 00:00:00')"
                )
            )
        await migrate.upgrade(db)
        async with db.engine.begin() as connection:
            assert (await connection.execute(text("SELECT team FROM users WHERE id = 'u1'"))).scalar_one() is None
            await connection.execute(text("UPDATE users SET team = 'vision' WHERE id = 'u1'"))

        def columns(connection: Connection, table: str) -> set[str]:
            return {column["name"] for column in inspect(connection).get_columns(table)}

        async with db.engine.connect() as connection:
            assert "team" in await connection.run_sync(columns, "jobs")
        await migrate.downgrade(db, "0008")
        async with db.engine.connect() as connection:
            assert "team" not in await connection.run_sync(columns, "users")
            assert "team" not in await connection.run_sync(columns, "jobs")
            assert (await connection.execute(text("SELECT username FROM users"))).scalar_one() == "alice"
    finally:
        await db.dispose()
