"""Incoming provider webhooks: who may send them, replay protection, and applying what they say.

A delivery is checked in this order: source address against the provider's allowlist, then the
provider's signature check (``parse_webhook``), then its id against the deliveries already taken
(a replay changes nothing). What it reports goes through the single status writer, so duplicate,
late and out-of-order deliveries are harmless and finished jobs stay finished. No user session is
involved: the signature is the authentication.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from cloudtuner.core.errors import WebhookSourceForbiddenError
from cloudtuner.core.network import client_address, in_networks, parse_networks
from cloudtuner.core.states import JobStatus
from cloudtuner.db.tables import JobRow, WebhookReceiptRow
from cloudtuner.providers.base import WebhookEvent
from cloudtuner.services.context import ServiceContext
from cloudtuner.services.dispatch import append_log, apply_observation
from cloudtuner.services.settings_documents import get_cloud_settings, get_provider_settings

log = logging.getLogger(__name__)

RECEIPT_RETENTION = timedelta(days=2)


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
        trusted = parse_networks((await get_cloud_settings(ctx)).trusted_proxies)
        sender = client_address(peer, headers.get("x-forwarded-for"), trusted)
        if not in_networks(sender, parse_networks(allowed)):
            log.warning("refused a %s webhook from %s (not in webhook_allowed_ips)", provider_name, sender)
            raise WebhookSourceForbiddenError()
    event = await provider.parse_webhook(headers, body, ctx.clock.now())
    return await apply_webhook_event(ctx, provider_name, event, job_hint=job_hint)


async def apply_webhook_event(
    ctx: ServiceContext, provider_name: str, event: WebhookEvent, *, job_hint: str | None = None
) -> WebhookOutcome:
    """Record a verified delivery and apply it to its job; a delivery seen before changes nothing."""
    now = ctx.clock.now()
    info = event.info
    try:
        async with ctx.db.transaction() as session:
            session.add(WebhookReceiptRow(provider=provider_name, webhook_id=event.event_id, received_at=now))
            await session.flush()
            job_id = await session.scalar(
                select(JobRow.id).where(
                    JobRow.provider == provider_name, JobRow.provider_job_id == info.provider_job_id
                )
            )
            if job_id is None and job_hint:
                job_id = job_hint
            if job_id is None:
                log.info("%s webhook for unknown run %s ignored", provider_name, info.provider_job_id)
                return WebhookOutcome(accepted=True)
            job = await session.get(JobRow, job_id, with_for_update=True, populate_existing=True)
            if job is None or job.provider != provider_name:
                return WebhookOutcome(accepted=True)
            if job.provider_job_id is None:
                # The run's creation reply has not been applied yet; the webhook names the run first.
                if JobStatus(job.status) not in (JobStatus.UPLOADING, JobStatus.STARTING):
                    return WebhookOutcome(accepted=True, job_id=job.id)
                job.provider_job_id = info.provider_job_id
            elif job.provider_job_id != info.provider_job_id:
                return WebhookOutcome(accepted=True, job_id=job.id)
            if event.logs is not None and (chunk := append_log(job, event.logs, now)) is not None:
                session.add(chunk)
            if JobStatus(job.status).is_terminal:
                # Only a report of a finished run carries the final cost; a late "processing"
                # delivery only has a running estimate.
                if info.cost_usd is not None and info.status.as_job_status().is_terminal:
                    job.cost_usd = info.cost_usd
            else:
                apply_observation(ctx, session, job, info, cause=f"webhook: {info.status.value}")
            return WebhookOutcome(accepted=True, job_id=job.id, status=JobStatus(job.status))
    except IntegrityError:
        return WebhookOutcome(accepted=True, duplicate=True)


async def forget_old_receipts(ctx: ServiceContext) -> None:
    """Delete delivery ids older than the retention (providers stop retrying long before)."""
    async with ctx.db.transaction() as session:
        await session.execute(
            delete(WebhookReceiptRow).where(WebhookReceiptRow.received_at < ctx.clock.now() - RECEIPT_RETENTION)
        )
