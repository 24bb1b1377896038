"""New rows of a group commit's batch, written with one INSERT per table instead of one ORM object each.

Code that adds a row inside a transaction calls :func:`add_row` with the row's values. In a plain
transaction that is ``session.add(Model(**values))``: the row is flushed with the session as
before, and the transaction's later queries see it. A group commit that runs many small changes
in one transaction (``services.job_updates``) opens :func:`batched_inserts` around them instead:
the values are then kept aside and written, before the commit, with one ``executemany`` INSERT per
table (tables in the order they were first added to, rows in the order they were added), which
costs a fraction of building, cascading and flushing an ORM object per row.

Only code that reads nothing back before the batch is written may run under
:func:`batched_inserts` (a group commit's changes do no I/O, so they cannot): the kept rows are
not in the session, and a query would not see them until :meth:`BatchedInserts.write`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, cast

from sqlalchemy import Table, insert
from sqlalchemy.ext.asyncio import AsyncSession

from cloudtuner.db.tables import Base

_KEY = "cloudtuner.batched_inserts"


class BatchedInserts:
    """The rows kept aside for one transaction, by table; see the module docstring."""

    def __init__(self) -> None:
        self._rows: dict[Table, list[dict[str, Any]]] = {}

    def add(self, table: Table, values: dict[str, Any]) -> None:
        """Keep a row of ``table`` (every row of a table must name the same columns)."""
        rows = self._rows.get(table)
        if rows is None:
            self._rows[table] = [values]
        else:
            rows.append(values)

    async def write(self, session: AsyncSession) -> None:
        """INSERT the rows kept so far in ``session``'s transaction, one statement per table."""
        rows, self._rows = self._rows, {}
        for table, values in rows.items():
            await session.execute(insert(table), values)


@contextlib.contextmanager
def batched_inserts(session: AsyncSession) -> Iterator[BatchedInserts]:
    """Keep the rows that :func:`add_row` is given for ``session`` aside while the block runs.

    The caller writes them with :meth:`BatchedInserts.write` before its transaction commits.
    """
    batch = BatchedInserts()
    session.info[_KEY] = batch
    try:
        yield batch
    finally:
        session.info.pop(_KEY, None)


def add_row(session: AsyncSession, model: type[Base], values: dict[str, Any]) -> None:
    """Add a new row of ``model`` with ``values`` to ``session``'s transaction.

    Within :func:`batched_inserts` the row is kept for the batch's INSERT; otherwise it is added
    to the session as an ORM object.
    """
    batch: BatchedInserts | None = session.info.get(_KEY)
    if batch is None:
        session.add(model(**values))
    else:
        batch.add(cast(Table, model.__table__), values)
