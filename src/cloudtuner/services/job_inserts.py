"""Group commit for new jobs: many submissions written in one transaction.

Every submission without an idempotency key hands its job row and first event here and waits.
One flush at a time writes everything queued so far with two ``executemany`` INSERTs and one
commit, then wakes the waiters; submissions that arrive during a flush form the next batch. A
waiter returns only after its rows are committed, so the reply never names a job that does not
exist. On SQLite (one writer at a time) this turns N write transactions into one; it costs
nothing when requests come one by one (the batch is then a single job).

**Audit.** A job may come with the audit entry of its submission; the flush appends the entries
of the jobs it inserts to the chain in the same transaction (``services.audit.append_entries``),
so a job never exists without its entry and a submission costs no transaction of its own for it.

**Spending limits.** A job that falls under an enabled limit comes with a reservation; the flush
checks the batch's reservations in queue order inside its transaction, before the INSERTs
(``services.costs_admission.admit``). A refused job is not inserted and its waiter gets the
refusal; the others are inserted as usual. Batches without reservations skip the check entirely.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert

from cloudtuner.core.clock import Clock
from cloudtuner.db.engine import Database
from cloudtuner.db.tables import Base
from cloudtuner.services.audit import AuditEvent, append_entries
from cloudtuner.services.costs_admission import Admission, Reservation, admit
from cloudtuner.services.group_commit import GroupCommit

JOBS = Base.metadata.tables["jobs"]
JOB_EVENTS = Base.metadata.tables["job_events"]
IDEMPOTENCY_KEYS = Base.metadata.tables["idempotency_keys"]


_Pending = tuple[dict[str, Any], dict[str, Any], Reservation | None, AuditEvent | None]
_ADMITTED = Admission()
"""The admission of a job under no limit (shared: never changed)."""


class JobInserter:
    """Queues new jobs and writes them in batches; see the module docstring."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock
        self._writer: GroupCommit[_Pending, Admission] = GroupCommit(self._write, name="job-inserts")

    async def insert(
        self,
        job: dict[str, Any],
        first_event: dict[str, Any],
        reservation: Reservation | None = None,
        audit_entry: AuditEvent | None = None,
    ) -> Admission:
        """Write a job row and its first event (and ``audit_entry``); return once they are committed.

        With a ``reservation``, the job is first checked against its spending limits in the same
        transaction; the returned admission carries the warnings for the reply. A refused job's
        audit entry is not written either.

        Raises:
            SpendingLimitExceededError: a block limit refused the job; nothing was written for it.
            SQLAlchemyError: the batch's transaction failed (every job in it is then absent).
        """
        return await self._writer.submit((job, first_event, reservation, audit_entry))

    async def _write(self, batch: list[_Pending]) -> list[Admission | Exception]:
        admissions = [_ADMITTED] * len(batch)
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
                entries = [entry for _, _, _, entry in admitted if entry is not None]
                await append_entries(session, entries, self._clock.now())
        return [admission.refusal or admission for admission in admissions]
