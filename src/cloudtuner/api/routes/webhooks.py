"""Provider webhooks: POST /api/webhooks/{provider}. Public: the signature is the authentication."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from cloudtuner.api.deps import Context
from cloudtuner.schemas.common import ErrorResponse
from cloudtuner.services import webhooks as webhook_service

router = APIRouter(tags=["webhooks"])

MAX_WEBHOOK_BYTES = 16 * 1024 * 1024


@router.post(
    "/api/webhooks/{provider}",
    summary="Receive a provider webhook",
    responses={
        401: {"model": ErrorResponse, "description": "Missing, wrong or stale signature."},
        403: {"model": ErrorResponse, "description": "The sender is not in webhook_allowed_ips."},
    },
)
async def receive_webhook(
    provider: str,
    request: Request,
    ctx: Context,
    job_id: Annotated[
        str | None, Query(description="Set by cloudtuner in the webhook URL it gives the provider.")
    ] = None,
) -> dict[str, Any]:
    """Run events from a provider (Replicate: start, output, logs, completed), verified by signature
    (`webhook-id`, `webhook-timestamp`, `webhook-signature`) and optionally by source address.
    Needs no sign-in. Replays and duplicates are accepted and change nothing."""
    body = await request.body()
    headers = {name.lower(): value for name, value in request.headers.items()}
    outcome = await webhook_service.ingest_webhook(
        ctx,
        provider.strip().lower(),
        headers,
        body[:MAX_WEBHOOK_BYTES],
        peer=request.client.host if request.client else None,
        job_hint=job_id,
    )
    return {
        "success": True,
        "duplicate": outcome.duplicate,
        "job_id": outcome.job_id,
        "status": outcome.status.value if outcome.status else None,
    }
