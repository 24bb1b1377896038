"""Incoming provider webhooks: who may send them, replay protection, and applying what they say.

A delivery is checked in this order: source address against the provider's allowlist, then the
provider's signature check (``parse_webhook``), then its id against the deliveries already taken
(a replay changes nothing). What it reports goes through the single status writer, so duplicate,
late and out-of-order deliveries are harmless and finished jobs stay finished. No user session is
involved: the signature is the authentication.

**Group commit.** Verified deliveries are written by the context's ``webhook_deliveries`` writer
(``services.group_commit``): each delivery queues and waits, and one flush at a time applies
everything queued so far in one write transaction, then answers the waiters; deliveries that
arrive during a flush form the next batch. A flush records the batch's delivery ids with one
``INSERT ... ON CONFLICT DO NOTHING RETURNING`` (an id that is not returned, or that came earlier
in the same batch, is a replay),
locks the batch's jobs with one SELECT in id order, applies the deliveries in arrival order and
commits. A delivery is answered only after its receipt and its changes are committed; if the
transaction fails, each delivery of the batch is tried again in a transaction of its own, so one
bad delivery cannot take the others with it. On SQLite (one writer at a time) this turns N write
transactions of about seven statements each into one.

Each transaction costs the same whatever its size, so under load the batches are kept large: when
the previous batch had several deliveries, a flush waits up to ``LINGER_SECONDS`` (2 ms) for as
many to be queued before it begins. A delivery that arrives alone is written at once.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import JSON, ColumnElement, Select, and_, bindparam, delete, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, defer

from cloudtuner.core.errors import WebhookSourceForbiddenError
from cloudtuner.core.network import IPNetwork, client_address, in_networks, parse_networks
from cloudtuner.core.states import JobStatus
from cloudtuner.db.engine import Database
from cloudtuner.db.tables import Base, JobRow, WebhookReceiptRow
from cloudtuner.providers.base import WebhookEvent
from cloudtuner.services.context import ServiceContext
from cloudtuner.services.group_commit import GroupCommit
from cloudtuner.services.observations import append_log, apply_observation
from cloudtuner.services.settings_documents import get_cloud_settings, get_provider_settings

log = logging.getLogger(__name__)

RECEIPT_RETENTION = timedelta(days=2)
RECEIPTS = Base.metadata.tables["webhook_receipts"]
INSERT_LOG_CHUNKS = insert(Base.metadata.tables["job_logs"])
UNUSED_COLUMNS = tuple(
    defer(getattr(JobRow, column.key))
    for column in JobRow.__table__.columns
    if isinstance(column.type, JSON) and column.key != "progress"
)
"""The JSON columns (configs, summaries) other than progress, which a delivery only writes: not
loaded and decoded with the batch's jobs. Code that reads one anyway loads it then (see _commit)."""
LINGER_SECONDS = 0.002
"""Under concurrent load, how long a flush may wait for deliveries on their way before it begins."""
MAX_BATCH = 256
"""Deliveries written in one transaction at most (SQLite allows 32,766 bound values per statement)."""


@dataclass(frozen=True)
class WebhookOutcome:
    """What became of one delivery."""

    accepted: bool
    duplicate: bool = False
    job_id: str | None = None
    status: JobStatus | None = None


async def ingest_webhook(
    ctx: ServiceContext,
    provider_name: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    peer: str | None,
    job_hint: str | None = None,
) -> WebhookOutcome:
    """Take one webhook delivery for ``provider_name``.

    ``headers`` have lowercase names; ``peer`` is the address the connection came from;
    ``job_hint`` is the ``job_id`` query parameter cloudtuner put in the webhook URL, if any
    (used only to attach a run whose creation reply has not been applied yet).

    Raises:
        UnknownProviderError: no provider has that name.
        WebhookSourceForbiddenError: the sender is not in the provider's webhook_allowed_ips.
        WebhookRejectedError: the signature is missing, wrong or stale.
    """
    provider = ctx.providers.get(provider_name)
    allowed = (await get_provider_settings(ctx, provider_name)).webhook_allowed_ips
    if allowed:
        trusted = _networks(tuple((await get_cloud_settings(ctx)).trusted_proxies))
        sender = client_address(peer, headers.get("x-forwarded-for"), trusted)
        if not in_networks(sender, _networks(tuple(allowed))):
            log.warning("refused a %s webhook from %s (not in webhook_allowed_ips)", provider_name, sender)
            raise WebhookSourceForbiddenError()
    event = await provider.parse_webhook(headers, body, ctx.clock.now())
    return await apply_webhook_event(ctx, provider_name, event, job_hint=job_hint)


@functools.lru_cache(maxsize=64)
def _networks(entries: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    """``parse_networks`` of a settings list, remembered (the lists change rarely)."""
    return tuple(parse_networks(entries))


async def apply_webhook_event(
    ctx: ServiceContext, provider_name: str, event: WebhookEvent, *, job_hint: str | None = None
) -> WebhookOutcome:
    """Record a verified delivery and apply it to its job; a delivery seen before changes nothing.

    Returns once the delivery's receipt and its changes are committed.

    Raises:
        SQLAlchemyError: the delivery could not be written (nothing of it was committed).
    """
    return await _writer(ctx).submit(_Delivery(ctx, provider_name, event, job_hint))


def _writer(ctx: ServiceContext) -> GroupCommit[_Delivery, WebhookOutcome]:
    """Return the context's writer of webhook deliveries, made on first use (one per context, so
    that concurrent deliveries share transactions)."""
    if ctx.webhook_deliveries is None:
        ctx.webhook_deliveries = GroupCommit(
            lambda batch: _commit_deliveries(ctx, batch),
            name="webhook-deliveries",
            max_batch=MAX_BATCH,
            one_by_one_on_failure=True,
            linger_seconds=LINGER_SECONDS,
        )
    writer: GroupCommit[_Delivery, WebhookOutcome] = ctx.webhook_deliveries
    return writer


@dataclass
class _Delivery:
    ctx: ServiceContext
    provider: str
    event: WebhookEvent
    job_hint: str | None


async def _commit_deliveries(ctx: ServiceContext, batch: Sequence[_Delivery]) -> list[WebhookOutcome]:
    """Record a batch's receipts and apply its fresh deliveries, in one transaction."""
    now = ctx.clock.now()
    async with ctx.db.transaction() as session:
        fresh = await _record_receipts(ctx.db, session, batch, now)
        jobs = await _lock_jobs_of(session, [item for index, item in enumerate(batch) if index in fresh])
        by_run = {(job.provider, job.provider_job_id): job for job in jobs.values() if job.provider_job_id}
        chunks: list[dict[str, Any]] = []

        def apply_all(_: Session) -> list[WebhookOutcome]:
            return [
                _apply(session, item, by_run, jobs, chunks, now)
                if index in fresh
                else WebhookOutcome(accepted=True, duplicate=True)
                for index, item in enumerate(batch)
            ]

        # In run_sync, reading a column left unloaded (see _lock_jobs_of) loads it, rather
        # than failing for want of an await.
        outcomes = await session.run_sync(apply_all)
        if chunks:
            # One executemany, in the order the chunks were cut (a log is its chunks in id order).
            await session.execute(INSERT_LOG_CHUNKS, chunks)
        return outcomes


async def _record_receipts(db: Database, session: AsyncSession, batch: Sequence[_Delivery], now: datetime) -> set[int]:
    """Insert the batch's delivery ids; return the positions of deliveries not seen before."""
    first: dict[tuple[str, str], int] = {}
    for index, item in enumerate(batch):
        first.setdefault((item.provider, item.event.event_id), index)
    # Sorted, so that two transactions inserting overlapping ids wait rather than deadlock.
    rows = [{"provider": p, "webhook_id": w, "job_id": None, "received_at": now} for p, w in sorted(first)]
    result = await session.execute(_receipts_insert(db), rows)
    return {first[(provider, webhook_id)] for provider, webhook_id in result}


_RECEIPTS_INSERTS: dict[str, Any] = {}


def _receipts_insert(db: Database) -> Any:
    """``INSERT INTO webhook_receipts ... ON CONFLICT DO NOTHING RETURNING provider, webhook_id``,
    built once per dialect (both dialects' INSERTs have on_conflict_do_nothing; the type the
    dialect declares does not)."""
    statement = _RECEIPTS_INSERTS.get(db.dialect.name)
    if statement is None:
        insert_receipts: Any = db.dialect.insert(RECEIPTS)
        statement = insert_receipts.on_conflict_do_nothing().returning(RECEIPTS.c.provider, RECEIPTS.c.webhook_id)
        _RECEIPTS_INSERTS[db.dialect.name] = statement
    return statement


def _jobs_query(condition: ColumnElement[bool]) -> Select[JobRow]:
    return (
        select(JobRow)
        .options(*UNUSED_COLUMNS)
        .where(condition)
        .order_by(JobRow.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


LOCK_JOBS = _jobs_query(
    or_(
        and_(JobRow.provider == bindparam("provider"), JobRow.provider_job_id.in_(bindparam("runs", expanding=True))),
        JobRow.id.in_(bindparam("hints", expanding=True)),
    )
)
"""The jobs of one provider's runs, or named by job hints, locked in id order: built once, so that
it is compiled once."""


async def _lock_jobs_of(session: AsyncSession, batch: Sequence[_Delivery]) -> dict[str, JobRow]:
    """Lock, in id order, the jobs that the deliveries' runs (or their job hints) may name."""
    runs: dict[str, set[str]] = {}
    hints: set[str] = set()
    for item in batch:
        runs.setdefault(item.provider, set()).add(item.event.info.provider_job_id)
        if item.job_hint:
            hints.add(item.job_hint)
    if not runs:
        return {}
    if len(runs) == 1:
        ((provider, run_ids),) = runs.items()
        parameters = {"provider": provider, "runs": sorted(run_ids), "hints": sorted(hints)}
        rows = await session.scalars(LOCK_JOBS, parameters)
    else:
        matches: list[ColumnElement[bool]] = [
            and_(JobRow.provider == provider, JobRow.provider_job_id.in_(sorted(run_ids)))
            for provider, run_ids in sorted(runs.items())
        ]
        matches.append(JobRow.id.in_(sorted(hints)))
        rows = await session.scalars(_jobs_query(or_(*matches)))
    return {job.id: job for job in rows.all()}


def _apply(
    session: AsyncSession,
    item: _Delivery,
    by_run: dict[tuple[str, str], JobRow],
    jobs: dict[str, JobRow],
    chunks: list[dict[str, Any]],
    now: datetime,
) -> WebhookOutcome:
    """Apply one new delivery to its locked job; new log text is added to ``chunks`` (no I/O here)."""
    info = item.event.info
    job = by_run.get((item.provider, info.provider_job_id))
    if job is None and item.job_hint:
        job = jobs.get(item.job_hint)
        if job is None or job.provider != item.provider:
            return WebhookOutcome(accepted=True)
    if job is None:
        log.info("%s webhook for unknown run %s ignored", item.provider, info.provider_job_id)
        return WebhookOutcome(accepted=True)
    if job.provider_job_id is None:
        # The run's creation reply has not been applied yet; the webhook names the run first.
        if JobStatus(job.status) not in (JobStatus.UPLOADING, JobStatus.STARTING):
            return WebhookOutcome(accepted=True, job_id=job.id)
        job.provider_job_id = info.provider_job_id
        by_run[(job.provider, info.provider_job_id)] = job
    elif job.provider_job_id != info.provider_job_id:
        return WebhookOutcome(accepted=True, job_id=job.id)
    if item.event.logs is not None and (chunk := append_log(job, item.event.logs, now)) is not None:
        chunks.append(
            {"job_id": chunk.job_id, "start_offset": chunk.start_offset, "content": chunk.content, "created_at": now}
        )
    if JobStatus(job.status).is_terminal:
        # Only a report of a finished run carries the final cost; a late "processing"
        # delivery only has a running estimate.
        if info.cost_usd is not None and info.status.as_job_status().is_terminal:
            job.cost_usd = info.cost_usd
    else:
        apply_observation(item.ctx, session, job, info, cause=f"webhook: {info.status.value}")
    return WebhookOutcome(accepted=True, job_id=job.id, status=JobStatus(job.status))


async def forget_old_receipts(ctx: ServiceContext) -> None:
    """Delete delivery ids older than the retention (providers stop retrying long before)."""
    async with ctx.db.transaction() as session:
        await session.execute(
            delete(WebhookReceiptRow).where(WebhookReceiptRow.received_at < ctx.clock.now() - RECEIPT_RETENTION)
        )
