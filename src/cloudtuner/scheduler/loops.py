"""The background scheduler: dispatch, recovery and sync loops in the server process.

Every loop is safe to run in several server processes on one database at once: work is taken
with leases (``services.leases``), never by remembering it in memory. A loop that fails logs the
error and carries on at its next tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from sqlalchemy import delete

from cloudtuner.core.errors import ProviderError
from cloudtuner.db.tables import IdempotencyKeyRow
from cloudtuner.services import auth, deliveries, dispatch, queue, storage_credentials, webhooks, workers_protocol
from cloudtuner.services.context import ServiceContext

log = logging.getLogger(__name__)

HOUSEKEEPING_INTERVAL_SECONDS = 3600.0


def make_owner_name() -> str:
    """Return a name for this process's leases: host, pid and a random suffix."""
    return f"{socket.gethostname()[:32]}:{os.getpid()}:{secrets.token_hex(3)}"


DISPATCH_COALESCE_SECONDS = 0.05
"""Pause after a dispatch round that claimed jobs. Under a stream of submissions each round then
takes the jobs of many rather than of one group commit: a claim (a read and a write
transaction) costs about as much as starting several jobs. A job waits at most this much longer."""

DELIVERY_BATCH = 20
"""Deliveries collected together: one read and one transaction each batch."""


class Scheduler:
    """Runs the loops; ``run_*_once`` do one round each and are what tests drive directly."""

    def __init__(self, ctx: ServiceContext, *, owner: str | None = None, max_concurrent_calls: int = 64) -> None:
        self.ctx = ctx
        self.owner = owner or make_owner_name()
        self._max_concurrent_calls = max_concurrent_calls
        self._in_flight: set[asyncio.Task[None]] = set()
        self._loops: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()

    # --- one round of each kind of work ---------------------------------------------------------

    async def run_dispatch_once(self) -> int:
        """Start queued jobs in queue order, within the queue's limits and the free call slots;
        return how many were claimed."""
        free = self._free_slots()
        if free == 0:
            return 0
        claimed = await queue.claim_next(self.ctx, self.owner, limit=free)
        for job_id, token in claimed:
            self._spawn(dispatch.dispatch_job(self.ctx, job_id, token), f"dispatch {job_id}")
        return len(claimed)

    async def run_reconcile_once(self) -> int:
        """Recover interrupted starts and sync runs that are due; return how many jobs were taken."""
        free = self._free_slots()
        if free == 0:
            return 0
        await workers_protocol.reap_lost_assignments(self.ctx)  # requeue the jobs of lost workers
        orphans = await dispatch.claim_orphans(self.ctx, self.owner, limit=free)
        for job_id, token in orphans:
            self._spawn(dispatch.recover_job(self.ctx, job_id, token), f"recover {job_id}")
        free = self._free_slots()
        due = await dispatch.claim_due_for_sync(self.ctx, self.owner, limit=free) if free else []
        for target in await dispatch.load_sync_targets(self.ctx, due):
            self._spawn(dispatch.sync_target(self.ctx, target), f"sync {target.job_id}")
        return len(orphans) + len(due)

    async def run_deliveries_once(self) -> int:
        """Collect what ended jobs delivered (``services.deliveries``), a batch at a time until none
        is due; return how many were taken."""
        taken = 0
        while not self._stopping.is_set():
            claimed = await deliveries.claim_deliveries(self.ctx, limit=DELIVERY_BATCH)
            await deliveries.collect_deliveries(self.ctx, claimed)
            taken += len(claimed)
            if len(claimed) < DELIVERY_BATCH:
                break
        return taken

    async def run_housekeeping_once(self) -> None:
        """Delete expired idempotency keys, old webhook delivery ids and storage keys that ended
        long ago; auth housekeeping."""
        async with self.ctx.db.transaction() as session:
            await session.execute(delete(IdempotencyKeyRow).where(IdempotencyKeyRow.expires_at <= self.ctx.clock.now()))
        await webhooks.forget_old_receipts(self.ctx)
        await storage_credentials.delete_stale_storage_credentials(
            self.ctx, older_than=storage_credentials.STALE_KEY_RETENTION
        )
        await auth.housekeeping(self.ctx)  # ended sessions, stale sign-in counts, audit retention

    async def drain(self) -> None:
        """Wait until every provider call this scheduler started has finished."""
        while self._in_flight:
            await asyncio.gather(*list(self._in_flight), return_exceptions=True)

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the loops as tasks of the running event loop."""
        self._stopping.clear()
        self._loops = [
            asyncio.create_task(self._dispatch_loop(), name="scheduler-dispatch"),
            asyncio.create_task(
                self._every(self._reconcile_tick_seconds(), self.run_reconcile_once), name="scheduler-reconcile"
            ),
            asyncio.create_task(
                self._every(HOUSEKEEPING_INTERVAL_SECONDS, self.run_housekeeping_once), name="scheduler-housekeeping"
            ),
            asyncio.create_task(
                self._every(self.ctx.settings.reconcile_interval_seconds, self.run_deliveries_once),
                name="scheduler-deliveries",
            ),
        ]

    async def stop(self) -> None:
        """Stop the loops and cancel calls still in flight (their jobs are recovered later)."""
        self._stopping.set()
        for task in [*self._loops, *self._in_flight]:
            task.cancel()
        for task in [*self._loops, *self._in_flight]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._loops.clear()
        self._in_flight.clear()

    # --- internals ------------------------------------------------------------------------------

    def _free_slots(self) -> int:
        return max(0, self._max_concurrent_calls - len(self._in_flight))

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        """Run ``work`` as a task of its own; a task cancelled before it started closes ``work``."""

        async def run() -> None:
            try:
                await work
            except ProviderError as exc:
                log.warning("%s: %s", name, exc.message)
            except Exception:
                log.exception("%s failed", name)
            self.ctx.wake_dispatcher()

        task = asyncio.create_task(run(), name=name)
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)
        task.add_done_callback(lambda _task: work.close())  # a no-op for work that ran

    def _reconcile_tick_seconds(self) -> float:
        return min(1.0, self.ctx.settings.reconcile_interval_seconds)

    async def _dispatch_loop(self) -> None:
        wakeup = self.ctx.dispatch_wakeup
        interval = self.ctx.settings.dispatch_interval_seconds
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wakeup.wait(), timeout=interval)
            wakeup.clear()
            claimed = 0
            try:
                # Another round at once only after a full one: a partial round took every job it
                # could, and a submit or a finished call during it has set the wakeup again.
                while True:
                    free = self._free_slots()
                    round_claimed = await self.run_dispatch_once()
                    claimed += round_claimed
                    if round_claimed == 0 or round_claimed < free:
                        break
            except Exception:
                log.exception("dispatch round failed")
            if claimed:
                # Let the submissions of the next moment gather, so that one claim takes them all.
                await asyncio.sleep(min(DISPATCH_COALESCE_SECONDS, interval))

    async def _every(self, seconds: float, work: Callable[[], Awaitable[object]]) -> None:
        while not self._stopping.is_set():
            try:
                await work()
            except Exception:
                log.exception("scheduler round failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=seconds)
