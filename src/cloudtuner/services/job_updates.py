"""Group commit for changes to existing jobs: many small updates written in one transaction.

The scheduler changes one job at a time (claim it, mark it starting, attach its run, apply a
sync), and with many jobs in flight each of those used to be its own write transaction. Here a
change is a plain function of the locked row; :meth:`JobUpdates.apply` queues it and waits. One
flush at a time locks every queued job with one SELECT (in id order), calls the changes in the
order they were queued, commits once and hands each caller its change's result. Changes queued
during a flush form the next batch. A caller returns only after its change is committed.

A change runs inside the transaction, so it must not do I/O or await anything; it may call
``transitions.transition_job`` and add rows to the session. Rows added through
``db.batched_inserts.add_row`` (job events, job storage keys, delivery rows) are written after the
changes with one INSERT per table, before the commit. If any change of a batch raises,
the batch is rolled back and each of its changes is retried in a transaction of its own, so one
bad change cannot lose the others; the one that raised gets its exception.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from cloudtuner.db.batched_inserts import batched_inserts
from cloudtuner.db.engine import Database
from cloudtuner.db.tables import JobRow
from cloudtuner.services.group_commit import GroupCommit
from cloudtuner.services.transitions import lock_jobs

T = TypeVar("T")

JobChange = Callable[[AsyncSession, JobRow | None], T]
"""A change to one job: called with the session and the locked row (None if the job is gone)."""


class JobUpdates:
    """Queues changes to jobs and commits them in batches; see the module docstring."""

    def __init__(self, db: Database, *, max_batch: int = 500) -> None:
        self._db = db
        self._writer: GroupCommit[tuple[str, JobChange[Any]], Any] = GroupCommit(
            self._commit, name="job-updates", max_batch=max_batch, one_by_one_on_failure=True
        )

    async def apply(self, job_id: str, change: JobChange[T]) -> T:
        """Run ``change`` on the locked row of ``job_id`` in a write transaction; return its result.

        Raises:
            Exception: whatever ``change`` raised (nothing of it is committed), or the
                database's error if the transaction failed.
        """
        result: T = await self._writer.submit((job_id, change))
        return result

    async def _commit(self, batch: list[tuple[str, JobChange[Any]]]) -> list[Any]:
        async with self._db.transaction() as session:
            rows = await lock_jobs(session, [job_id for job_id, _ in batch])
            with batched_inserts(session) as added:
                results = [change(session, rows.get(job_id)) for job_id, change in batch]
            # The jobs' UPDATEs first, then the new rows (as the session's own flush orders them).
            await session.flush()
            await added.write(session)
            return results
