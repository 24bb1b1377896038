"""Submitting jobs: validation, consent, idempotency, cost and spending limits, and the row that enters the queue.

Submit only records the job; the scheduler starts it (see ``services.dispatch``). The job starts
at its submitter's role's priority (or one a lead or admin chose) and records the submitter's
team (``services.queue.starting_priority``, ``services.users.find_submitter``). Its cost plan
(hardware, price, estimate) comes from ``services.costs_plan``; under an enabled spending limit
the estimate is reserved in the transaction that inserts the job (``services.costs_admission``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import timedelta
from types import SimpleNamespace
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
from cloudtuner.db.tables import IdempotencyKeyRow, JobEventRow
from cloudtuner.schemas.costs import CostEstimate
from cloudtuner.schemas.jobs import JobDetail, PreviewResponse, SubmitJobRequest
from cloudtuner.schemas.settings import ConsentMode
from cloudtuner.services.audit import AuditEvent, append_entries
from cloudtuner.services.configs import find_config
from cloudtuner.services.context import ServiceContext
from cloudtuner.services.costs_admission import Admission, Reservation, admit
from cloudtuner.services.costs_plan import plan_job_costs, preview_costs
from cloudtuner.services.fingerprints import fingerprint
from cloudtuner.services.job_inserts import IDEMPOTENCY_KEYS, JOB_EVENTS, JOBS
from cloudtuner.services.job_views import job_detail
from cloudtuner.services.jobs import load_detail
from cloudtuner.services.publishing import seal_publishing
from cloudtuner.services.queue import check_queued_limit, starting_priority
from cloudtuner.services.settings_documents import get_cloud_settings
from cloudtuner.services.uploads import check_upload, summarize
from cloudtuner.services.users import find_submitter

_UNSET_COLUMNS: dict[str, Any] = {
    "provider_job_id": None,
    "progress": None,
    "error": None,
    "cancel_requested_at": None,
    "started_at": None,
    "finished_at": None,
}
"""Columns a new job's row leaves empty (NULL) on insert."""


@dataclass(frozen=True)
class SubmitResult:
    """A submitted job, and whether it came from an earlier request with the same key."""

    job: JobDetail
    idempotent_hit: bool
    warnings: list[str] = field(default_factory=list)

    @property
    def estimate(self) -> CostEstimate | None:
        """Return the job's cost estimate at submission."""
        return self.job.cost_estimate


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
    ctx: ServiceContext,
    principal: Principal,
    provider_name: str,
    request: SubmitJobRequest,
    *,
    priority: int | None = None,
    audit: AuditEvent | None = None,
) -> SubmitResult:
    """Record a new job in the queue and wake the dispatcher; nothing is sent anywhere yet.

    The job starts at ``priority`` if given (only for principals with ``queue.manage``), else at
    the priority of the submitter's role; it records the submitter's team. With an
    ``idempotency_key``, the same caller sending the same request within the key's lifetime gets
    the job the first request created, however many requests race.

    ``audit`` is the entry recording this submission: a new job's id joins its detail
    (``job_id``) and it is written in the job's own transaction. It is written only with a new
    job: a replay or a refusal writes none here (the caller records those).

    Raises:
        PermissionDeniedError: a priority was given without the queue.manage permission.
        InvalidRequestError: the priority given is out of range.
        UnknownProviderError: no provider has that name.
        ConfigNotFoundError: config_name_to_load names no saved config.
        MissingDataloaderError, InvalidConfigError: the config is incomplete.
        IdempotencyKeyConflictError: the key was used with a different request.
        PackagingError: a local dataset cannot be read, or is over the provider's upload limit.
        UploadConsentRequiredError, UploadsDisabledError: the consent mode forbids this upload.
        QueueFullError: the caller already has as many jobs waiting as the queue allows.
        SpendingLimitExceededError: the job's estimate would take a block limit past its amount.
    """
    provider = ctx.providers.get(provider_name)
    submitter = await find_submitter(ctx, principal)
    start_priority = await starting_priority(ctx, principal, submitter.role, priority)
    config, dataloader, snapshot = await _resolve_config(ctx, request)
    key = request.idempotency_key
    request_fingerprint = ""
    if key is not None:
        asked: dict[str, Any] = {"priority": priority} if priority is not None else {}
        request_fingerprint = fingerprint(
            {"provider": provider_name, **asked, **request.model_dump(exclude={"idempotency_key"}, exclude_none=True)}
        )
        replay = await _idempotent_replay(ctx, principal, key, request_fingerprint)
        if replay is not None:
            return replay
    await check_queued_limit(ctx, principal)
    upload_summary = await check_upload(ctx, provider, dataloader, request.upload_consent)
    plan = await plan_job_costs(
        ctx,
        provider_name,
        config,
        dataloader,
        hardware=request.hardware,
        budget_usd=request.budget_usd,
        image_count=upload_summary.image_count if upload_summary is not None else None,
    )

    now = ctx.clock.now()
    values: dict[str, Any] = {
        "id": new_sortable_id(),
        "owner_id": principal.id,
        "provider": provider_name,
        "status": JobStatus.QUEUED.value,
        "priority": start_priority,
        "team": submitter.team,
        "config_name": request.config_name_to_load,
        "config": config,
        "dataloader_config": dataloader,
        "config_snapshot": snapshot,
        "tracker_run_name": request.tracker_run_name,
        "publishing": await seal_publishing(ctx, provider, request.publishing, config),
        "upload_consent": request.upload_consent,
        "idempotency_key": key,
        "upload_summary": upload_summary.model_dump(mode="json") if upload_summary else None,
        "cost_usd": 0.0,
        "log_length": 0,
        "dispatch_attempts": 0,
        "created_at": now,
        "updated_at": now,
        **plan.columns(),
    }
    if values["hardware"] is None:
        values["hardware"] = request.hardware
    event = {
        "job_id": values["id"],
        "from_status": None,
        "to_status": JobStatus.QUEUED.value,
        "cause": "submitted",
        "detail": None,
        "created_at": now,
    }
    entry = replace(audit, detail={**(audit.detail or {}), "job_id": values["id"]}) if audit is not None else None
    if key is None:
        admission = await ctx.job_inserter.insert(values, event, plan.reservation, entry)
    else:
        try:
            admission = await _insert_with_key(
                ctx, principal, key, request_fingerprint, values, event, plan.reservation, entry
            )
        except IntegrityError:
            # Another request with this key committed first: its job is the answer.
            replay = await _idempotent_replay(ctx, principal, key, request_fingerprint)
            if replay is None:
                raise
            return replay
    ctx.wake_dispatcher()
    # The reply is built from the values just written (a namespace: building an ORM row costs more).
    job = SimpleNamespace(**_UNSET_COLUMNS, **values)
    return SubmitResult(
        job=job_detail(job, [JobEventRow(**event)], now),
        idempotent_hit=False,
        warnings=[*plan.warnings, *admission.warnings],
    )


async def _insert_with_key(
    ctx: ServiceContext,
    principal: Principal,
    key: str,
    request_fingerprint: str,
    values: dict[str, Any],
    event: dict[str, Any],
    reservation: Reservation | None,
    audit_entry: AuditEvent | None,
) -> Admission:
    """Insert a job, its first event, its idempotency key and its audit entry in one transaction.

    With a ``reservation`` the job is first checked against its spending limits, in the same
    transaction (see ``services.costs_admission``).

    Raises:
        IntegrityError: a live key for this caller already exists (another request won).
        SpendingLimitExceededError: a block limit refused the job; nothing was written.
    """
    now = values["created_at"]
    admission = Admission()
    async with ctx.db.transaction() as session:
        if reservation is not None:
            (admission,) = await admit(ctx.db, session, [reservation], now)
            if admission.refusal is not None:
                raise admission.refusal
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
        if audit_entry is not None:
            await append_entries(session, [audit_entry], ctx.clock.now())
    return admission


async def preview_job(ctx: ServiceContext, provider_name: str, request: SubmitJobRequest) -> PreviewResponse:
    """Return what submitting ``request`` would upload, whether it needs consent, what it would cost
    and the spending limits it would count against; change nothing.

    Raises:
        UnknownProviderError, ConfigNotFoundError, MissingDataloaderError, InvalidConfigError,
        PackagingError: as for :func:`submit_job`, except that an over-limit package is reported
            in the summary (``fits_upload_limit: false``) rather than refused.
    """
    provider = ctx.providers.get(provider_name)
    config, dataloader, _snapshot = await _resolve_config(ctx, request)
    summary = await summarize(provider, dataloader)
    estimate, limits = await preview_costs(
        ctx, provider_name, config, dataloader, request.hardware, summary.image_count if summary else None
    )
    mode = (await get_cloud_settings(ctx)).upload_consent
    return PreviewResponse(
        provider=provider_name,
        uploads_local_data=summary is not None,
        consent_mode=mode.value,
        needs_upload_consent=summary is not None
        and mode is ConsentMode.ALWAYS_ASK
        and request.upload_consent is not True,
        upload_summary=summary,
        estimate=estimate,
        cost_limits=limits,
    )
