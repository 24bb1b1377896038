"""Group commit for new jobs: many submissions written in one transaction.

Every submission without an idempotency key hands its job row and first event here and waits.
One flush at a time writes everything queued so far with two ``executemany`` INSERTs and one
commit, then wakes the waiters; submissions that arrive during a flush form the next batch. A
waiter returns only after its rows are committed, so the reply never names a job that does not
exist. On SQLite (one writer at a time) this turns N write transactions into one; it costs
nothing when requests come one by one (the batch is then a single job).

**Spending limits.** A job that falls under an enabled limit comes with a reservation; the flush
checks the batch's reservations in queue order inside its transaction, before the INSERTs
(``services.costs_admission.admit``). A refused job is not inserted and its waiter gets the
refusal; the others are inserted as usual. Batches without reservations skip the check entirely.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import insert

from cloudtuner.db.engine import Database
from cloudtuner.db.tables import Base
from cloudtuner.services.costs_admission import Admission, Reservation, admit

JOBS = Base.metadata.tables["jobs"]
JOB_EVENTS = Base.metadata.tables["job_events"]
IDEMPOTENCY_KEYS = Base.metadata.tables["idempotency_keys"]


_Pending = tuple[dict[str, Any], dict[str, Any], Reservation | None, "asyncio.Future[Admission]"]
_ADMITTED = Admission()
"""The admission of a job under no limit (shared: never changed)."""


class JobInserter:
    """Queues new jobs and writes them in batches; see the module docstring."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._pending: list[_Pending] = []
        self._flusher: asyncio.Task[None] | None = None

    async def insert(
        self, job: dict[str, Any], first_event: dict[str, Any], reservation: Reservation | None = None
    ) -> Admission:
        """Write a job row and its first event; return once they are committed.

        With a ``reservation``, the job is first checked against its spending limits in the same
        transaction; the returned admission carries the warnings for the reply.

        Raises:
            SpendingLimitExceededError: a block limit refused the job; nothing was written for it.
            SQLAlchemyError: the batch's transaction failed (every job in it is then absent).
        """
        done: asyncio.Future[Admission] = asyncio.get_running_loop().create_future()
        self._pending.append((job, first_event, reservation, done))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_all(), name="job-inserts")
        return await asyncio.shield(done)

    async def _flush_all(self) -> None:
        # Let requests already being handled in this loop iteration join the first batch.
        await asyncio.sleep(0)
        while self._pending:
            batch, self._pending = self._pending, []
            admissions = [_ADMITTED] * len(batch)
            try:
                async with self._db.transaction() as session:
                    checked = [(index, item[2]) for index, item in enumerate(batch) if item[2] is not None]
                    if checked:
                        now = batch[checked[0][0]][0]["created_at"]
                        outcomes = await admit(self._db, session, [reservation for _, reservation in checked], now)
                        for (index, _), outcome in zip(checked, outcomes, strict=True):
                            admissions[index] = outcome
                    admitted = [item for item, result in zip(batch, admissions, strict=True) if not result.refusal]
                    if admitted:
                        await session.execute(insert(JOBS), [job for job, _, _, _ in admitted])
                        await session.execute(insert(JOB_EVENTS), [event for _, event, _, _ in admitted])
            except Exception as exc:
                for _, _, _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
            else:
                for (_, _, _, done), admission in zip(batch, admissions, strict=True):
                    if done.done():
                        continue
                    if admission.refusal is not None:
                        done.set_exception(admission.refusal)
                    else:
                        done.set_result(admission)
