"""SQLite for the async engine without a thread hop: statements run on the event loop's thread.

SQLAlchemy's ``sqlite+aiosqlite`` dialect talks to an aiosqlite-shaped connection. aiosqlite
runs each call on a thread of its own and wakes the event loop when it is done: several
system calls and two thread switches for every statement, which cost more than the statement
itself on a small job store (a read of one row takes a few microseconds in SQLite and about half
a millisecond through the thread). :func:`connect` returns a connection with the same shape
whose calls run at once, in the caller's thread.

The trade: while a statement runs, the event loop waits for it. That is fine for this store
because

* every write transaction of the process is queued by ``Database.transaction`` before it
  begins, so ``BEGIN IMMEDIATE`` never waits for another writer of the same process (it waits,
  up to the busy timeout, only for another process's transaction);
* in WAL mode readers never wait for the writer;
* the queries are indexed and short (listing a page of 100,000 jobs takes a few milliseconds).

Only what SQLAlchemy's adapter uses is provided.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any


class InlineCursor:
    """An aiosqlite-shaped cursor over a :class:`sqlite3.Cursor`."""

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    async def __aenter__(self) -> InlineCursor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._cursor.close()

    async def execute(self, sql: str, parameters: Any = None) -> InlineCursor:
        if parameters is None:
            self._cursor.execute(sql)
        else:
            self._cursor.execute(sql, parameters)
        return self

    async def executemany(self, sql: str, parameters: Iterable[Any]) -> InlineCursor:
        self._cursor.executemany(sql, parameters)
        return self

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cursor.fetchmany(size if size is not None else self._cursor.arraysize)

    async def close(self) -> None:
        self._cursor.close()

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value


class _RunAtOnce:
    """Stands in for aiosqlite's request queue, which SQLAlchemy's adapter uses to set the
    isolation level: the call runs now and its future is resolved before ``put_nowait`` returns."""

    def put_nowait(self, item: tuple[asyncio.Future[Any] | None, Callable[[], Any]]) -> None:
        future, function = item
        try:
            result = function()
        except Exception as exc:
            if future is not None:
                future.set_exception(exc)
            return
        if future is not None:
            future.set_result(result)


class InlineConnection:
    """An aiosqlite-shaped connection over a :class:`sqlite3.Connection`."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._conn = connection
        self._connection: sqlite3.Connection | None = connection
        self._tx = _RunAtOnce()

    def cursor(self) -> InlineCursor:
        return InlineCursor(self._conn.cursor())

    @property
    def isolation_level(self) -> str | None:
        return self._conn.isolation_level

    async def commit(self) -> None:
        self._conn.commit()

    async def rollback(self) -> None:
        self._conn.rollback()

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        self._conn.create_function(*args, **kwargs)

    async def close(self) -> None:
        self.stop()

    def stop(self) -> None:
        """Close the connection now (SQLAlchemy's forced close); closing twice is harmless."""
        if self._connection is not None:
            self._connection = None
            self._conn.close()


def connector(path: Path | str, *, timeout_seconds: float) -> Callable[[], Any]:
    """Return the ``async_creator`` for ``create_async_engine`` that opens ``path`` inline.

    The connection may be closed by the pool from another thread (garbage collection at exit),
    hence ``check_same_thread=False``; it is used by one coroutine at a time, as any pooled
    connection is.
    """

    async def connect() -> InlineConnection:
        return InlineConnection(sqlite3.connect(str(path), timeout=timeout_seconds, check_same_thread=False))

    return connect
