"""Collecting what a job delivered once it ends: the delivery loop's work.

Each job that delivers somewhere has a ``job_deliveries`` row (``services.publishing.note_delivery``).
When the job has ended, the scheduler leases the row (:func:`claim_deliveries`, a batch at a
time) and :func:`collect_deliveries` lists each job's folder or repository and records every file
there as an artifact (one read and one transaction for the batch; remote listings run at once):

- ``local`` and ``auto``: the job's folder of the built-in endpoint (files written there are
  already recorded as they arrive; this catches any the recorder missed);
- ``s3``: ``s3://<bucket>/<base path>/<job id>/`` at the external endpoint, with the job's sealed
  keys (SHA-256 when the object was stored with that checksum);
- ``huggingface``: the repository's files (SHA-256 of LFS files); for a completed job the server
  then pushes its model card (``services.publishing_card``) and makes the repository's visibility
  what the job asked for.

For remote destinations the provider's report of the run's output is kept (``reported``). Listing
is retried with a growing wait (``RETRY_SECONDS``) up to ``MAX_ATTEMPTS`` times; then the row is
``failed`` with the reason. A completed job's model card waits (up to ``COST_WAIT``) for the
provider's final cost. No transaction is open during any network call; a result is applied only
while the lease is held.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update

from cloudtuner.core.errors import CloudtunerError, ConfigurationError
from cloudtuner.core.states import JobStatus
from cloudtuner.db.tables import JobDeliveryRow, JobRow
from cloudtuner.schemas.artifacts import DeliveryState
from cloudtuner.schemas.publishing import PublishingDestination
from cloudtuner.services import artifacts
from cloudtuner.services.context import ServiceContext
from cloudtuner.services.publishing import DEFAULT_S3_REGION, job_folder, unseal
from cloudtuner.services.publishing_card import model_card
from cloudtuner.services.publishing_hub import HubClient, HubError
from cloudtuner.storage import FilesystemObjectStore, S3Error
from cloudtuner.storage.s3client import S3Client, S3ClientError

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 6
RETRY_SECONDS = 15.0
LEASE_SECONDS = 300.0
COST_WAIT = timedelta(minutes=2)
"""How long a completed job's model card waits for the provider's final cost."""
MODEL_CARD = "README.md"


class DeliveryNotReadyError(Exception):
    """Try again shortly without counting an attempt (the final cost is not in yet)."""


@dataclass(frozen=True)
class DeliveryJob:
    """What collecting one job's delivery needs to know of the job."""

    job_id: str
    destination: str
    status: JobStatus
    provider: str
    provider_job_id: str | None
    publishing: dict[str, Any] | None
    config: dict[str, Any]
    dataloader: list[dict[str, Any]]
    upload_summary: dict[str, Any] | None
    hardware: str | None
    cost_usd: float
    cost_final: bool
    run_seconds: float | None
    price_per_second: float | None
    finished_at: datetime | None


async def claim_deliveries(ctx: ServiceContext, limit: int = 20) -> list[tuple[str, str]]:
    """Lease deliveries of ended jobs that are due; return ``(job id, lease token)`` pairs."""
    now = ctx.clock.now()
    due = (
        select(JobDeliveryRow.job_id)
        .join(JobRow, JobRow.id == JobDeliveryRow.job_id)
        .where(
            JobDeliveryRow.state == DeliveryState.PENDING.value,
            JobRow.finished_at.is_not(None),
            or_(JobDeliveryRow.next_attempt_at.is_(None), JobDeliveryRow.next_attempt_at <= now),
            or_(JobDeliveryRow.lease_expires_at.is_(None), JobDeliveryRow.lease_expires_at < now),
        )
        .order_by(JobDeliveryRow.next_attempt_at, JobDeliveryRow.job_id)
        .limit(limit)
    )
    async with ctx.db.read() as session:
        candidates = list((await session.scalars(due)).all())
    if not candidates:
        return []
    token = secrets.token_hex(16)  # one lease token for the batch, as services.leases does for jobs
    async with ctx.db.transaction() as session:
        taken = await session.scalars(
            update(JobDeliveryRow)
            .where(
                JobDeliveryRow.job_id.in_(candidates),
                JobDeliveryRow.state == DeliveryState.PENDING.value,
                or_(JobDeliveryRow.lease_expires_at.is_(None), JobDeliveryRow.lease_expires_at < now),
            )
            .values(lease_token=token, lease_expires_at=now + timedelta(seconds=LEASE_SECONDS))
            .returning(JobDeliveryRow.job_id)
        )
        return [(job_id, token) for job_id in sorted(taken.all())]


async def _load(ctx: ServiceContext, claimed: list[tuple[str, str]]) -> list[tuple[DeliveryJob, str]]:
    """Read the jobs of leased deliveries in one query; those whose lease is gone are left out."""
    tokens = dict(claimed)
    async with ctx.db.read() as session:
        rows = (
            await session.execute(
                select(JobDeliveryRow.destination, JobDeliveryRow.lease_token, JobRow)
                .join(JobRow, JobRow.id == JobDeliveryRow.job_id)
                .where(JobDeliveryRow.job_id.in_(list(tokens)))
            )
        ).all()
    loaded: list[tuple[DeliveryJob, str]] = []
    for destination, lease_token, job in rows:
        if lease_token is None or tokens.get(job.id) != lease_token:
            continue
        delivery = DeliveryJob(
            job_id=job.id,
            destination=destination,
            status=JobStatus(job.status),
            provider=job.provider,
            provider_job_id=job.provider_job_id,
            publishing=job.publishing,
            config=dict(job.config),
            dataloader=list(job.dataloader_config),
            upload_summary=job.upload_summary,
            hardware=job.hardware,
            cost_usd=float(job.cost_usd or 0.0),
            cost_final=bool(job.cost_final),
            run_seconds=job.run_seconds,
            price_per_second=job.price_per_second,
            finished_at=job.finished_at,
        )
        loaded.append((delivery, lease_token))
    return loaded


@dataclass(frozen=True)
class _Outcome:
    """What collecting one delivery found, to be settled with the others of its batch."""

    job_id: str
    token: str
    destination: str
    found: list[artifacts.FoundFile] | None = None
    """The files at the destination; None if it could not be listed."""
    error: str | None = None
    retry_in: float | None = None
    count_attempt: bool = True
    reported: str | None = None


async def collect_deliveries(ctx: ServiceContext, claimed: list[tuple[str, str]]) -> None:
    """List the destinations of leased deliveries (remote ones concurrently), record what is there,
    and settle the rows, all in one read and one transaction for the batch.

    Never raises for a destination's failures: they are recorded on its row and retried.
    """
    if not claimed:
        return
    loaded = await _load(ctx, claimed)
    outcomes = await asyncio.gather(*(_collect(ctx, job, token) for job, token in loaded))
    await _settle(ctx, list(outcomes))


async def _collect(ctx: ServiceContext, job: DeliveryJob, token: str) -> _Outcome:
    reported: str | None = None
    outcome = _Outcome(job.job_id, token, _recorded_as(job.destination))
    try:
        if job.destination in (PublishingDestination.S3.value, PublishingDestination.HUGGINGFACE.value):
            reported = await _reported_output(ctx, job)
        if job.destination == PublishingDestination.S3.value:
            found = await _list_s3(ctx, job)
        elif job.destination == PublishingDestination.HUGGINGFACE.value:
            found = await _collect_hub(ctx, job)
        else:
            found = await _list_local(ctx, job)
    except DeliveryNotReadyError:
        return dataclasses.replace(outcome, retry_in=5.0, count_attempt=False, reported=reported)
    except (S3ClientError, HubError, CloudtunerError) as exc:
        message = str(exc) if not isinstance(exc, CloudtunerError) else exc.message
        log.warning("collecting the delivery of job %s failed: %s", job.job_id, message)
        return dataclasses.replace(outcome, error=message, reported=reported)
    return dataclasses.replace(outcome, found=found, reported=reported)


def _recorded_as(destination: str) -> str:
    return PublishingDestination.LOCAL.value if destination == "auto" else destination


async def _settle(ctx: ServiceContext, outcomes: list[_Outcome]) -> None:
    """Record what each delivery found and settle its row, in one transaction; a row whose lease
    was lost meanwhile is left alone."""
    if not outcomes:
        return
    now = ctx.clock.now()
    async with ctx.db.transaction() as session:
        rows = {
            row.job_id: row
            for row in (
                await session.scalars(
                    select(JobDeliveryRow)
                    .where(JobDeliveryRow.job_id.in_([outcome.job_id for outcome in outcomes]))
                    .order_by(JobDeliveryRow.job_id)
                    .with_for_update()
                )
            ).all()
        }
        for outcome in outcomes:
            row = rows.get(outcome.job_id)
            if row is None or row.lease_token != outcome.token:
                continue
            if outcome.found is not None:
                await artifacts.record_files(ctx, outcome.job_id, outcome.destination, outcome.found, session=session)
            _settle_row(row, outcome, now)


def _settle_row(row: JobDeliveryRow, outcome: _Outcome, now: datetime) -> None:
    row.lease_token = None
    row.lease_expires_at = None
    row.updated_at = now
    if outcome.reported is not None:
        row.reported = outcome.reported[:4000]
    if outcome.count_attempt:
        row.attempts += 1
    if outcome.found is not None:
        row.state = DeliveryState.DONE.value
        row.error = None
        row.finished_at = now
        return
    if outcome.error is not None:
        row.error = outcome.error[:4000]
        if row.attempts >= MAX_ATTEMPTS:
            row.state = DeliveryState.FAILED.value
            row.finished_at = now
            return
    wait = outcome.retry_in if outcome.retry_in is not None else RETRY_SECONDS * 2 ** max(0, row.attempts - 1)
    row.next_attempt_at = now + timedelta(seconds=wait)


async def _reported_output(ctx: ServiceContext, job: DeliveryJob) -> str | None:
    """Return what the provider says the run produced (best effort; None if it cannot tell)."""
    provider = ctx.providers.find(job.provider)
    if provider is None or job.provider_job_id is None:
        return None
    try:
        info = await provider.get_job_status(job.provider_job_id)
    except CloudtunerError:
        return None
    output = (info.output or {}).get("output")
    if output is None:
        return None
    return output if isinstance(output, str) else str(output)


async def _list_local(ctx: ServiceContext, job: DeliveryJob) -> list[artifacts.FoundFile]:
    store = FilesystemObjectStore(ctx.settings.outputs_dir)
    bucket = ctx.settings.storage_default_bucket
    prefix = f"{artifacts.JOBS_FOLDER}{job.job_id}/"
    found: list[artifacts.FoundFile] = []
    after: str | None = None
    while True:
        try:
            page = await store.list_objects(bucket, prefix=prefix, max_keys=1000, after=after)
        except S3Error:
            return found
        for info in page.objects:
            found.append(
                artifacts.FoundFile(
                    path=info.key[len(prefix) :],
                    location=artifacts.local_location(bucket, info.key),
                    size_bytes=info.size,
                    delivered_at=info.last_modified,
                    etag=info.etag,
                    content_type=info.content_type,
                )
            )
        if not page.is_truncated or not page.objects:
            return found
        after = page.objects[-1].key


async def _list_s3(ctx: ServiceContext, job: DeliveryJob) -> list[artifacts.FoundFile]:
    stored = job.publishing or {}
    access_key = unseal(ctx, stored, "s3_access_key")
    secret_key = unseal(ctx, stored, "s3_secret_key")
    if not access_key or not secret_key:
        raise ConfigurationError("The job's S3 keys are not stored, so its bucket cannot be listed.")
    bucket = str(stored.get("s3_bucket"))
    prefix = job_folder(stored, job.job_id) + "/"
    found: list[artifacts.FoundFile] = []
    async with S3Client(
        stored.get("s3_endpoint_url"), access_key, secret_key, region=stored.get("s3_region") or DEFAULT_S3_REGION
    ) as client:
        for item in await client.list_objects(bucket, prefix):
            try:
                head = await client.head_object(bucket, item.key)
            except S3ClientError:
                head = None
            found.append(
                artifacts.FoundFile(
                    path=item.key[len(prefix) :],
                    location=f"s3://{bucket}/{item.key}",
                    size_bytes=item.size,
                    delivered_at=item.last_modified,
                    sha256=head.sha256 if head else None,
                    etag=item.etag,
                    content_type=head.content_type if head else None,
                )
            )
    return found


async def _collect_hub(ctx: ServiceContext, job: DeliveryJob) -> list[artifacts.FoundFile]:
    stored = job.publishing or {}
    repo_id = str(stored.get("hub_model_id"))
    token = unseal(ctx, stored, "hf_token")
    if token is None and ctx.settings.hf_token is not None:
        token = ctx.settings.hf_token.get_secret_value()
    now = ctx.clock.now()
    completed = job.status is JobStatus.COMPLETED
    if completed and not job.cost_final and job.finished_at is not None and now - job.finished_at < COST_WAIT:
        raise DeliveryNotReadyError
    card_sha256: str | None = None
    async with HubClient(ctx.settings.hf_endpoint, token) as hub:
        if completed:
            wanted = bool(stored.get("private", True))
            if await hub.is_private(repo_id) is not wanted:
                await hub.set_private(repo_id, wanted)
            card = model_card(
                repo_id=repo_id,
                job_id=job.job_id,
                provider=job.provider,
                hardware=job.hardware,
                config=job.config,
                dataloader=job.dataloader,
                upload_summary=job.upload_summary,
                cost_usd=job.cost_usd,
                run_seconds=job.run_seconds,
                price_per_second=job.price_per_second,
                finished_at=job.finished_at.isoformat() if job.finished_at else None,
            )
            await hub.put_file(repo_id, MODEL_CARD, card.encode(), f"Model card of cloudtuner job {job.job_id}")
            card_sha256 = hashlib.sha256(card.encode()).hexdigest()
        files = await hub.list_files(repo_id)
    return [
        artifacts.FoundFile(
            path=item.path,
            location=f"hf://{repo_id}/{item.path}",
            size_bytes=item.size,
            delivered_at=now,
            sha256=item.sha256 or (card_sha256 if completed and item.path == MODEL_CARD else None),
            etag=item.oid,
        )
        for item in files
    ]
