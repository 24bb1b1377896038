"""Provider webhooks: POST /api/webhooks/{provider}. Public: the signature is the authentication.

This is the busiest public route (a provider may send thousands of deliveries a second), so it
does by hand what FastAPI's dependency machinery would otherwise do on every call, which costs
more here than everything else the route does: it takes the service context straight from
``get_context``, reads ``job_id`` from the query string (documented through ``openapi_extra``),
and writes its small reply as JSON itself.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request, Response

from cloudtuner.api.deps import get_context
from cloudtuner.core.errors import CloudtunerError
from cloudtuner.schemas.common import ErrorResponse
from cloudtuner.services import metrics_telemetry
from cloudtuner.services import webhooks as webhook_service

router = APIRouter(tags=["webhooks"])

MAX_WEBHOOK_BYTES = 16 * 1024 * 1024
JOB_ID_PARAMETER = {
    "name": "job_id",
    "in": "query",
    "required": False,
    "schema": {"type": "string", "title": "Job Id"},
    "description": "Set by cloudtuner in the webhook URL it gives the provider.",
}


@router.post(
    "/api/webhooks/{provider}",
    response_model=dict[str, Any],
    summary="Receive a provider webhook",
    responses={
        401: {"model": ErrorResponse, "description": "Missing, wrong or stale signature."},
        403: {"model": ErrorResponse, "description": "The sender is not in webhook_allowed_ips."},
    },
    openapi_extra={"parameters": [JOB_ID_PARAMETER]},
)
async def receive_webhook(provider: str, request: Request) -> Response:
    """Run events from a provider (Replicate: start, output, logs, completed), verified by signature
    (`webhook-id`, `webhook-timestamp`, `webhook-signature`) and optionally by source address.
    Needs no sign-in. Replays and duplicates are accepted and change nothing."""
    ctx = await get_context(request)
    body = await request.body()
    headers = {name.lower(): value for name, value in request.headers.items()}
    name = provider.strip().lower()
    try:
        outcome = await webhook_service.ingest_webhook(
            ctx,
            name,
            headers,
            body[:MAX_WEBHOOK_BYTES],
            peer=request.client.host if request.client else None,
            job_hint=request.query_params.get("job_id"),
        )
    except CloudtunerError as exc:
        metrics_telemetry.count_webhook(ctx, name, exc.code)
        raise
    metrics_telemetry.count_webhook(ctx, name, "duplicate" if outcome.duplicate else "accepted")
    reply = {
        "success": True,
        "duplicate": outcome.duplicate,
        "job_id": outcome.job_id,
        "status": outcome.status.value if outcome.status else None,
    }
    return Response(json.dumps(reply, separators=(",", ":")), media_type="application/json")
