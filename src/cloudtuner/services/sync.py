"""On-demand sync with providers: POST /api/cloud/jobs/sync and ?sync_active=true."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from cloudtuner.core.errors import ProviderError
from cloudtuner.core.ids import new_sortable_id
from cloudtuner.core.permissions import Permission, Principal
from cloudtuner.core.states import ACTIVE_STATES
from cloudtuner.db.tables import JobRow
from cloudtuner.providers.base import CloudJobInfo, CloudTrainerService
from cloudtuner.schemas.jobs import SyncResponse
from cloudtuner.services.context import ServiceContext
from cloudtuner.services.dispatch import claim_due_for_sync, sync_job
from cloudtuner.services.metrics_telemetry import timed
from cloudtuner.services.transitions import record_event

log = logging.getLogger(__name__)

SYNC_LIMIT = 200
IMPORT_LIMIT = 50


async def sync_jobs(
    ctx: ServiceContext, principal: Principal, owner: str, *, import_runs: bool, timeout_seconds: float = 20.0
) -> SyncResponse:
    """Read every active job the caller may see from its provider now; optionally import new runs.

    Jobs another process is already syncing are skipped. Provider failures are reported in the
    reply's ``errors``, not raised.
    """
    query = select(JobRow.id).where(
        JobRow.status.in_([s.value for s in ACTIVE_STATES]), JobRow.provider_job_id.is_not(None)
    )
    if not principal.can(Permission.JOB_VIEW_ALL):
        query = query.where(JobRow.owner_id == principal.id)
    async with ctx.db.read() as session:
        job_ids = list((await session.scalars(query.order_by(JobRow.id.desc()).limit(SYNC_LIMIT))).all())
    errors: list[str] = []
    synced = 0
    claimed = await claim_due_for_sync(ctx, owner, limit=SYNC_LIMIT, job_ids=job_ids) if job_ids else []

    async def one(job_id: str, token: str) -> None:
        nonlocal synced
        try:
            await sync_job(ctx, job_id, token)
            synced += 1
        except ProviderError as exc:
            errors.append(f"job {job_id}: {exc.message}")

    imported = 0
    try:
        async with asyncio.timeout(timeout_seconds):
            await asyncio.gather(*(one(job_id, token) for job_id, token in claimed))
            if import_runs:
                for provider in ctx.providers:
                    try:
                        imported += await import_unknown_runs(ctx, principal, provider)
                    except ProviderError as exc:
                        errors.append(f"{provider.provider_name}: {exc.message}")
    except TimeoutError:
        errors.append(f"sync stopped after {timeout_seconds:g} s; the scheduler finishes the rest")
    return SyncResponse(synced=synced, imported=imported, errors=errors)


async def import_unknown_runs(ctx: ServiceContext, principal: Principal, provider: CloudTrainerService) -> int:
    """Add the provider's recent runs that cloudtuner did not create and does not know yet.

    Runs made for a cloudtuner job (they carry a reference) are never imported: recovery attaches
    them to their job, and a deleted job's run stays deleted.
    """
    listed = await timed(ctx, provider.provider_name, "list_jobs", provider.list_jobs(limit=IMPORT_LIMIT))
    runs = [run for run in listed if run.reference is None]
    if not runs:
        return 0
    async with ctx.db.transaction() as session:
        known = set(
            (
                await session.scalars(
                    select(JobRow.provider_job_id).where(
                        JobRow.provider == provider.provider_name,
                        JobRow.provider_job_id.in_([run.provider_job_id for run in runs]),
                    )
                )
            ).all()
        )
        fresh = [run for run in runs if run.provider_job_id not in known]
        for run in fresh:
            await _add_imported_job(ctx, session, principal, provider.provider_name, run)
    return len(fresh)


async def _add_imported_job(
    ctx: ServiceContext, session: AsyncSession, principal: Principal, provider_name: str, run: CloudJobInfo
) -> None:
    now = ctx.clock.now()
    status = run.status.as_job_status()
    job = JobRow(
        id=new_sortable_id(),
        owner_id=principal.id,
        provider=provider_name,
        status=status.value,
        priority=0,
        config_name=None,
        config=dict(run.metadata.get("config") or {}),
        dataloader_config=list(run.metadata.get("dataloader_config") or []),
        config_snapshot={"source": "imported"},
        tracker_run_name=run.metadata.get("tracker_run_name"),
        hardware=run.hardware,
        provider_job_id=run.provider_job_id,
        progress=run.progress.to_dict() if run.progress else None,
        cost_usd=run.cost_usd or 0.0,
        cost_final=run.cost_usd is not None and status.is_terminal,
        error=run.error,
        log_length=0,
        dispatch_attempts=0,
        created_at=run.created_at or now,
        updated_at=now,
        started_at=run.started_at,
        finished_at=run.finished_at if status.is_terminal else None,
        next_sync_at=now,
    )
    session.add(job)
    await session.flush()
    record_event(session, job, from_status=None, cause="imported from provider", detail=run.provider_job_id, now=now)
