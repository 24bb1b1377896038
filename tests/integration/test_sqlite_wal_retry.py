"""Switching a new SQLite file to WAL waits for a lock held by another connection."""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy.util import greenlet_spawn

from cloudtuner.db.dialects import enable_wal


class LockedTwice:
    """A cursor whose first two journal-mode switches find the database locked."""

    def __init__(self, message: str = "database is locked") -> None:
        self.calls = 0
        self.message = message

    def execute(self, sql: str) -> None:
        self.calls += 1
        if self.calls <= 2:
            raise sqlite3.OperationalError(self.message)


async def test_locked_switch_is_retried_until_it_works() -> None:
    cursor = LockedTwice()
    await greenlet_spawn(enable_wal, cursor, 5.0)
    assert cursor.calls == 3


async def test_other_errors_and_a_lock_past_the_timeout_are_raised() -> None:
    with pytest.raises(sqlite3.OperationalError, match="disk I/O"):
        await greenlet_spawn(enable_wal, LockedTwice("disk I/O error"), 5.0)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        await greenlet_spawn(enable_wal, LockedTwice(), 0.0)
