"""Migration 0004 (storage_credentials) up and down from 0003, with data in place, on both databases."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import inspect, text

from cloudtuner.db import migrate
from cloudtuner.db.engine import Database


async def table_names(db: Database) -> set[str]:
    async with db.engine.connect() as connection:
        names: set[str] = await connection.run_sync(lambda sync: set(inspect(sync).get_table_names()))
    return names


async def test_0004_up_down_up_keeps_the_jobs(database_url: str) -> None:
    db = Database(database_url)
    now = datetime.now(UTC).replace(tzinfo=None)
    try:
        await migrate.upgrade(db, "0003")
        async with db.engine.begin() as connection:
            await connection.execute(
                text(
                    "INSERT INTO jobs (id, owner_id, provider, status, priority, config, dataloader_config, "
                    "config_snapshot, cost_usd, log_length, dispatch_attempts, created_at, updated_at) VALUES "
                    "('01jobjobjobjobjobjobjobjob', 'local', 'scripted', 'queued', 0, '{}', '[]', '{}', 0, 0, 0, "
                    ":now, :now)"
                ),
                {"now": now},
            )
        await migrate.upgrade(db, "0004")
        assert await migrate.current_revision(db) == "0004"
        async with db.engine.begin() as connection:
            await connection.execute(
                text(
                    "INSERT INTO storage_credentials (access_key_id, secret_ciphertext, kind, job_id, bucket, prefix, "
                    "created_at, grace_seconds) VALUES ('CTJKEY00000000000001', 'x', 'job', "
                    "'01jobjobjobjobjobjobjobjob', 'cloudtuner', 'jobs/01jobjobjobjobjobjobjobjob/', :now, 3600)"
                ),
                {"now": now},
            )
        await migrate.downgrade(db, "0003")
        assert await migrate.current_revision(db) == "0003"
        names = await table_names(db)
        assert "storage_credentials" not in names
        async with db.engine.connect() as connection:
            assert (await connection.execute(text("SELECT count(*) FROM jobs"))).scalar() == 1
        await migrate.upgrade(db, "0004")
        assert "storage_credentials" in await table_names(db)
        async with db.engine.begin() as connection:
            assert (await connection.execute(text("SELECT count(*) FROM storage_credentials"))).scalar() == 0
            # The foreign key is there again: deleting the job deletes its keys.
            await connection.execute(
                text(
                    "INSERT INTO storage_credentials (access_key_id, secret_ciphertext, kind, job_id, created_at) "
                    "VALUES ('CTJKEY00000000000002', 'x', 'job', '01jobjobjobjobjobjobjobjob', :now)"
                ),
                {"now": now},
            )
        async with db.engine.begin() as connection:
            await connection.execute(text("DELETE FROM jobs"))
            assert (await connection.execute(text("SELECT count(*) FROM storage_credentials"))).scalar() == 0
    finally:
        await db.dispose()
