"""Group commit for changes to existing jobs: many small updates written in one transaction.

The scheduler changes one job at a time (claim it, mark it starting, attach its run, apply a
sync), and with many jobs in flight each of those used to be its own write transaction. Here a
change is a plain function of the locked row; :meth:`JobUpdates.apply` queues it and waits. One
flush at a time locks every queued job with one SELECT (in id order), calls the changes in the
order they were queued, commits once and hands each caller its change's result. Changes queued
during a flush form the next batch. A caller returns only after its change is committed.

A change runs inside the transaction, so it must not do I/O or await anything; it may call
``transitions.transition_job`` and add rows to the session. If any change of a batch raises,
the batch is rolled back and each of its changes is retried in a transaction of its own, so one
bad change cannot lose the others; the one that raised gets its exception.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from cloudtuner.db.engine import Database
from cloudtuner.db.tables import JobRow
from cloudtuner.services.transitions import lock_jobs

T = TypeVar("T")

JobChange = Callable[[AsyncSession, JobRow | None], T]
"""A change to one job: called with the session and the locked row (None if the job is gone)."""


@dataclass
class _Queued(Generic[T]):
    job_id: str
    change: JobChange[T]
    done: asyncio.Future[T] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class JobUpdates:
    """Queues changes to jobs and commits them in batches; see the module docstring."""

    def __init__(self, db: Database, *, max_batch: int = 500) -> None:
        self._db = db
        self._max_batch = max_batch
        self._pending: list[_Queued[Any]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def apply(self, job_id: str, change: JobChange[T]) -> T:
        """Run ``change`` on the locked row of ``job_id`` in a write transaction; return its result.

        Raises:
            Exception: whatever ``change`` raised (nothing of it is committed), or the
                database's error if the transaction failed.
        """
        item: _Queued[T] = _Queued(job_id, change)
        self._pending.append(item)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_all(), name="job-updates")
        return await asyncio.shield(item.done)

    async def _flush_all(self) -> None:
        # Let changes queued in this iteration of the event loop join the first batch.
        await asyncio.sleep(0)
        while self._pending:
            batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch :]
            try:
                results = await self._commit(batch)
            except Exception:
                if len(batch) == 1:
                    await self._commit_alone(batch[0])
                else:
                    for item in batch:
                        await self._commit_alone(item)
            else:
                for item, result in zip(batch, results, strict=True):
                    if not item.done.done():
                        item.done.set_result(result)

    async def _commit(self, batch: list[_Queued[Any]]) -> list[Any]:
        async with self._db.transaction() as session:
            rows = await lock_jobs(session, [item.job_id for item in batch])
            return [item.change(session, rows.get(item.job_id)) for item in batch]

    async def _commit_alone(self, item: _Queued[Any]) -> None:
        try:
            (result,) = await self._commit([item])
        except Exception as exc:
            if not item.done.done():
                item.done.set_exception(exc)
        else:
            if not item.done.done():
                item.done.set_result(result)
