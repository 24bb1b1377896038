"""Group commit: what concurrent callers queue is written in shared transactions.

SQLite takes one writer at a time and every commit costs about as much as a small write, so the
store's busiest writers (new jobs, job changes, webhook deliveries, audit entries) do not each
open a transaction per caller: callers queue an item and wait, and one flush at a time writes
every item queued so far with one call of the writer's ``write`` function (one transaction).
Items that arrive during a flush form the next batch.

Contract of ``write(batch) -> results``: one result per item, in order; a result that is an
``Exception`` is raised to that item's caller alone (for example a spending limit refusing one
new job of the batch). If ``write`` itself raises, nothing of the batch was committed: each
caller gets the error, or, with ``one_by_one_on_failure``, each item is written again alone so
that one bad item does not fail the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

Write = Callable[[list[T]], Awaitable[Sequence[R | Exception]]]


class GroupCommit(Generic[T, R]):
    """Queues items of concurrent callers and writes them in batches; see the module docstring.

    ``max_batch`` caps a batch. With ``linger_seconds``, a flush that follows a batch of several
    items waits up to that long for as many to queue again (callers arriving side by side then
    share one transaction, a group commit's usual short delay).
    """

    def __init__(
        self,
        write: Write[T, R],
        *,
        name: str,
        max_batch: int | None = None,
        one_by_one_on_failure: bool = False,
        linger_seconds: float = 0.0,
    ) -> None:
        self._write = write
        self._name = name
        self._max_batch = max_batch
        self._one_by_one = one_by_one_on_failure
        self._linger = linger_seconds
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._wanted = 0
        self._enough = asyncio.Event()

    async def submit(self, item: T) -> R:
        """Queue ``item``; return its result once its batch is committed.

        Raises:
            Exception: the item's own error (a result that is an exception), or the error of
                the transaction that failed to write it.
        """
        done: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, done))
        if self._wanted and len(self._pending) >= self._wanted:
            self._enough.set()
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_all(), name=self._name)
        return await asyncio.shield(done)

    async def _flush_all(self) -> None:
        # Let callers being handled in this iteration of the event loop join the first batch.
        await asyncio.sleep(0)
        previous = 0
        while self._pending:
            limit = self._max_batch or len(self._pending)
            if self._linger and previous > 1 and len(self._pending) < min(previous, limit):
                await self._gather(min(previous, limit))
                limit = self._max_batch or len(self._pending)
            batch, self._pending = self._pending[:limit], self._pending[limit:]
            previous = len(batch)
            try:
                results = await self._write([item for item, _ in batch])
            except Exception as exc:
                if not self._one_by_one:
                    for _, done in batch:
                        _settle(done, exc)
                    continue
                if len(batch) > 1:
                    log.warning("%s: a batch of %d failed; writing them one by one", self._name, len(batch))
                for entry in batch:
                    await self._write_alone(entry)
            else:
                for (_, done), result in zip(batch, results, strict=True):
                    _settle(done, result)

    async def _write_alone(self, entry: tuple[T, asyncio.Future[R]]) -> None:
        item, done = entry
        try:
            (result,) = await self._write([item])
        except Exception as exc:
            _settle(done, exc)
        else:
            _settle(done, result)

    async def _gather(self, wanted: int) -> None:
        """Wait until ``wanted`` items are queued, or the linger time has passed."""
        self._wanted = wanted
        self._enough.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._enough.wait(), self._linger)
        self._wanted = 0


def _settle(done: asyncio.Future[R], result: R | Exception) -> None:
    if done.done():
        return
    if isinstance(result, Exception):
        done.set_exception(result)
    else:
        done.set_result(result)
