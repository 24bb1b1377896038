"""Submitting jobs: validation, consent, idempotency, and the row that enters the queue.

Submit only records the job; the scheduler starts it (see ``services.dispatch``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, insert
from sqlalchemy.exc import IntegrityError

from cloudtuner.core.errors import (
    ConfigNotFoundError,
    IdempotencyKeyConflictError,
    InvalidConfigError,
    MissingDataloaderError,
)
from cloudtuner.core.ids import new_sortable_id
from cloudtuner.core.permissions import Principal
from cloudtuner.core.states import JobStatus
from cloudtuner.db.tables import IdempotencyKeyRow, JobEventRow, JobRow
from cloudtuner.schemas.jobs import JobDetail, PreviewResponse, SubmitJobRequest
from cloudtuner.schemas.settings import ConsentMode
from cloudtuner.services.configs import find_config
from cloudtuner.services.context import ServiceContext
from cloudtuner.services.fingerprints import fingerprint
from cloudtuner.services.job_inserts import IDEMPOTENCY_KEYS, JOB_EVENTS, JOBS
from cloudtuner.services.job_views import job_detail
from cloudtuner.services.jobs import load_detail
from cloudtuner.services.settings_documents import get_cloud_settings
from cloudtuner.services.uploads import check_upload, summarize


@dataclass(frozen=True)
class SubmitResult:
    """A submitted job, and whether it came from an earlier request with the same key."""

    job: JobDetail
    idempotent_hit: bool


async def _resolve_config(
    ctx: ServiceContext, request: SubmitJobRequest
) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    """Return (config, dataloader, snapshot) for a submission."""
    if request.config_name_to_load and request.config is not None:
        raise InvalidConfigError("Send either config_name_to_load or an inline config, not both.")
    if request.config_name_to_load:
        row = await find_config(ctx, request.config_name_to_load)
        if row is None:
            raise ConfigNotFoundError(
                f"No saved config is called {request.config_name_to_load!r}. "
                "Save it first with PUT /api/configs/{name} or `cloudtuner configs put`."
            )
        config, dataloader = row.config, row.dataloader_config
        if request.dataloader_config is not None:
            dataloader = [d.model_dump(exclude_none=True) for d in request.dataloader_config]
        snapshot = {"source": "saved", "name": row.name, "commit": row.latest_commit}
    elif request.config is not None:
        if request.dataloader_config is None:
            raise MissingDataloaderError(
                "An inline config needs a dataloader_config: a list of datasets, as in "
                "multidatabackend.json, for example "
                '[{"id": "training-images", "type": "local", "instance_data_dir": "/data/my-dataset"}].'
            )
        config = request.config
        dataloader = [d.model_dump(exclude_none=True) for d in request.dataloader_config]
        snapshot = {"source": "inline"}
    else:
        raise InvalidConfigError(
            "Say what to train: send config_name_to_load (a saved config) or an inline config "
            "with its dataloader_config."
        )
    if not dataloader:
        raise MissingDataloaderError("The dataloader_config is empty: a job needs at least one dataset.")
    ids = [dataset["id"] for dataset in dataloader]
    repeated = sorted({dataset_id for dataset_id in ids if ids.count(dataset_id) > 1})
    if repeated:
        raise InvalidConfigError(f"Dataset ids must be unique; repeated: {', '.join(repeated)}.")
    snapshot["sha256"] = fingerprint({"config": config, "dataloader_config": dataloader})
    return config, dataloader, snapshot


async def _idempotent_replay(
    ctx: ServiceContext, principal: Principal, key: str, request_fingerprint: str
) -> SubmitResult | None:
    """Return the job an unexpired key made, or None; refuse a key reused with another body."""
    async with ctx.db.read() as session:
        row = await session.get(IdempotencyKeyRow, (principal.id, key))
        if row is None or row.expires_at <= ctx.clock.now():
            return None
        if row.fingerprint != request_fingerprint:
            raise IdempotencyKeyConflictError(
                f"The idempotency_key {key!r} was already used with a different request; "
                "use a new key for a different job.",
                job_id=row.job_id,
            )
        job_id = row.job_id
    return SubmitResult(job=await load_detail(ctx, job_id), idempotent_hit=True)


async def submit_job(
    ctx: ServiceContext, principal: Principal, provider_name: str, request: SubmitJobRequest
) -> SubmitResult:
    """Record a new job in the queue and wake the dispatcher; nothing is sent anywhere yet.

    With an ``idempotency_key``, the same caller sending the same request within the key's
    lifetime gets the job the first request created, however many requests race.

    Raises:
        UnknownProviderError: no provider has that name.
        ConfigNotFoundError: config_name_to_load names no saved config.
        MissingDataloaderError, InvalidConfigError: the config is incomplete.
        IdempotencyKeyConflictError: the key was used with a different request.
        PackagingError: a local dataset cannot be read, or is over the provider's upload limit.
        UploadConsentRequiredError, UploadsDisabledError: the consent mode forbids this upload.
    """
    provider = ctx.providers.get(provider_name)
    config, dataloader, snapshot = await _resolve_config(ctx, request)
    key = request.idempotency_key
    request_fingerprint = fingerprint(
        {"provider": provider_name, **request.model_dump(exclude={"idempotency_key"}, exclude_none=True)}
    )
    if key is not None:
        replay = await _idempotent_replay(ctx, principal, key, request_fingerprint)
        if replay is not None:
            return replay
    upload_summary = await check_upload(ctx, provider, dataloader, request.upload_consent)

    now = ctx.clock.now()
    values: dict[str, Any] = {
        "id": new_sortable_id(),
        "owner_id": principal.id,
        "provider": provider_name,
        "status": JobStatus.QUEUED.value,
        "priority": 0,
        "config_name": request.config_name_to_load,
        "config": config,
        "dataloader_config": dataloader,
        "config_snapshot": snapshot,
        "tracker_run_name": request.tracker_run_name,
        "hardware": request.hardware,
        "publishing": request.publishing,
        "upload_consent": request.upload_consent,
        "idempotency_key": key,
        "upload_summary": upload_summary.model_dump(mode="json") if upload_summary else None,
        "cost_usd": 0.0,
        "log_length": 0,
        "dispatch_attempts": 0,
        "created_at": now,
        "updated_at": now,
    }
    event = {
        "job_id": values["id"],
        "from_status": None,
        "to_status": JobStatus.QUEUED.value,
        "cause": "submitted",
        "detail": None,
        "created_at": now,
    }
    if key is None:
        await ctx.job_inserter.insert(values, event)
    else:
        try:
            await _insert_with_key(ctx, principal, key, request_fingerprint, values, event)
        except IntegrityError:
            # Another request with this key committed first: its job is the answer.
            replay = await _idempotent_replay(ctx, principal, key, request_fingerprint)
            if replay is None:
                raise
            return replay
    ctx.wake_dispatcher()
    job = JobRow(**values)
    return SubmitResult(job=job_detail(job, [JobEventRow(**event)], now), idempotent_hit=False)


async def _insert_with_key(
    ctx: ServiceContext,
    principal: Principal,
    key: str,
    request_fingerprint: str,
    values: dict[str, Any],
    event: dict[str, Any],
) -> None:
    """Insert a job, its first event and its idempotency key in one transaction.

    Raises:
        IntegrityError: a live key for this caller already exists (another request won).
    """
    now = values["created_at"]
    async with ctx.db.transaction() as session:
        await session.execute(insert(JOBS).values(values))
        await session.execute(insert(JOB_EVENTS).values(event))
        await session.execute(
            delete(IdempotencyKeyRow).where(
                IdempotencyKeyRow.principal_id == principal.id,
                IdempotencyKeyRow.key == key,
                IdempotencyKeyRow.expires_at <= now,
            )
        )
        await session.execute(
            insert(IDEMPOTENCY_KEYS).values(
                principal_id=principal.id,
                key=key,
                fingerprint=request_fingerprint,
                job_id=values["id"],
                created_at=now,
                expires_at=now + timedelta(hours=ctx.settings.idempotency_ttl_hours),
            )
        )


async def preview_job(ctx: ServiceContext, provider_name: str, request: SubmitJobRequest) -> PreviewResponse:
    """Return what submitting ``request`` would upload and whether it needs consent; change nothing.

    Raises:
        UnknownProviderError, ConfigNotFoundError, MissingDataloaderError, InvalidConfigError,
        PackagingError: as for :func:`submit_job`, except that an over-limit package is reported
            in the summary (``fits_upload_limit: false``) rather than refused.
    """
    provider = ctx.providers.get(provider_name)
    _config, dataloader, _snapshot = await _resolve_config(ctx, request)
    summary = await summarize(provider, dataloader)
    mode = (await get_cloud_settings(ctx)).upload_consent
    return PreviewResponse(
        provider=provider_name,
        uploads_local_data=summary is not None,
        consent_mode=mode.value,
        needs_upload_consent=summary is not None
        and mode is ConsentMode.ALWAYS_ASK
        and request.upload_consent is not True,
        upload_summary=summary,
    )
