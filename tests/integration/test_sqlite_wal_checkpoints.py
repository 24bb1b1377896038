"""The SQLite store's WAL is checkpointed by its own thread, not inside the commits of the event loop."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path

from sqlalchemy import text

from cloudtuner.db import wal_checkpoints
from cloudtuner.db.engine import Database

ROWS = 400
ROW_BYTES = 8 * 1024


def _checkpoint_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "sqlite-wal-checkpoints"]


async def test_commits_leave_checkpoints_to_the_thread_which_stops_with_the_store(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    before = len(_checkpoint_threads())
    db = Database(f"sqlite+aiosqlite:///{path}")
    try:
        async with db.transaction() as session:
            pages = await session.scalar(text("PRAGMA wal_autocheckpoint"))
            await session.execute(text("CREATE TABLE blobs (id INTEGER PRIMARY KEY, body BLOB)"))
        assert pages == wal_checkpoints.FALLBACK_AUTOCHECKPOINT_PAGES
        assert len(_checkpoint_threads()) == before + 1

        for start in range(0, ROWS, 50):
            async with db.transaction() as session:
                await session.execute(
                    text("INSERT INTO blobs (body) VALUES (:body)"),
                    [{"body": os.urandom(ROW_BYTES)} for _ in range(start, start + 50)],
                )
        # The connections' own threshold (10,000 pages, ~40 MiB) is far off, and the connection
        # stays open: only the thread can have copied the pages into the database file.
        deadline = time.monotonic() + 10
        while path.stat().st_size < ROWS * ROW_BYTES and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert path.stat().st_size >= ROWS * ROW_BYTES
    finally:
        await db.dispose()
    assert len(_checkpoint_threads()) == before


async def test_a_store_in_memory_has_no_checkpoint_thread() -> None:
    before = len(_checkpoint_threads())
    db = Database("sqlite+aiosqlite:///:memory:")
    try:
        async with db.read() as session:
            assert await session.scalar(text("SELECT 1")) == 1
        assert len(_checkpoint_threads()) == before
    finally:
        await db.dispose()


def test_a_missing_file_is_not_created(tmp_path: Path) -> None:
    checkpointer = wal_checkpoints.WalCheckpointer(str(tmp_path / "gone.db"), interval_seconds=0.01)
    checkpointer.start()
    checkpointer.stop()
    assert not (tmp_path / "gone.db").exists()
