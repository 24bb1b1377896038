"""Group commit for new jobs: many submissions written in one transaction.

Every submission without an idempotency key hands its job row and first event here and waits.
One flush at a time writes everything queued so far with two ``executemany`` INSERTs and one
commit, then wakes the waiters; submissions that arrive during a flush form the next batch. A
waiter returns only after its rows are committed, so the reply never names a job that does not
exist. On SQLite (one writer at a time) this turns N write transactions into one; it costs
nothing when requests come one by one (the batch is then a single job).
"""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import insert

from cloudtuner.db.engine import Database
from cloudtuner.db.tables import Base

JOBS = Base.metadata.tables["jobs"]
JOB_EVENTS = Base.metadata.tables["job_events"]
IDEMPOTENCY_KEYS = Base.metadata.tables["idempotency_keys"]


class JobInserter:
    """Queues new jobs and writes them in batches; see the module docstring."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._pending: list[tuple[dict[str, Any], dict[str, Any], asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def insert(self, job: dict[str, Any], first_event: dict[str, Any]) -> None:
        """Write a job row and its first event; return once they are committed.

        Raises:
            SQLAlchemyError: the batch's transaction failed (every job in it is then absent).
        """
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((job, first_event, done))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_all(), name="job-inserts")
        await asyncio.shield(done)

    async def _flush_all(self) -> None:
        # Let requests already being handled in this loop iteration join the first batch.
        await asyncio.sleep(0)
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                async with self._db.transaction() as session:
                    await session.execute(insert(JOBS), [job for job, _, _ in batch])
                    await session.execute(insert(JOB_EVENTS), [event for _, event, _ in batch])
            except Exception as exc:
                for _, _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
            else:
                for _, _, done in batch:
                    if not done.done():
                        done.set_result(None)
