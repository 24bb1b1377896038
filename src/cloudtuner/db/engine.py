"""The job store's engine and its transactions.

Services own their transactions and keep them short: ``async with db.transaction() as session``
commits on exit and rolls back on error. Never make a network call inside one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from cloudtuner.db.dialects import READ_ONLY_OPTION, StoreDialect, dialect_for_url


class Database:
    """An engine for writes and a view of it for reads, with the dialect that made them."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self.dialect: StoreDialect = dialect_for_url(url)
        self.engine: AsyncEngine = create_async_engine(url, echo=echo, **self.dialect.engine_options())
        self.dialect.install(self.engine)
        self._write_lock: asyncio.Lock | None = asyncio.Lock() if self.dialect.single_writer else None
        self._write_sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self._read_sessions = async_sessionmaker(
            self.engine.execution_options(**{READ_ONLY_OPTION: True}), expire_on_commit=False
        )

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """Yield a session in a write transaction; commit on success, roll back on error.

        Where the database takes one writer at a time (SQLite), writers of this process queue
        here, in order, instead of sleeping in the database's busy handler; other processes still
        wait on its busy timeout.
        """
        queue = self._write_lock or contextlib.nullcontext()
        async with queue, self._write_sessions() as session, session.begin():
            yield session

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """Yield a session for reads only; it never takes the write lock."""
        async with self._read_sessions() as session, session.begin():
            yield session

    async def dispose(self) -> None:
        """Close every pooled connection and stop the dialect's helpers (SQLite's checkpoints)."""
        try:
            await self.engine.dispose()
        finally:
            self.dialect.close()
