"""Provider webhooks: POST /api/webhooks/{provider}. Public: the signature is the authentication.

This is the busiest public route (a provider may send thousands of deliveries a second), so its
requests are answered by ``api.webhook_fast_path`` ahead of the framework's routing, middleware
and dependency machinery, which would cost more than everything else the route does. The route
declared here documents it in the OpenAPI schema; ``create_app`` always installs the fast path,
so the route's own function only answers where that middleware is left out. Both call
:func:`accept_webhook`, so they answer alike.
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
from cloudtuner.services.context import ServiceContext

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
    reply = await accept_webhook(
        await get_context(request),
        provider,
        {name.lower(): value for name, value in request.headers.items()},
        await request.body(),
        peer=request.client.host if request.client else None,
        job_hint=request.query_params.get("job_id"),
    )
    return Response(reply, media_type="application/json")


async def accept_webhook(
    ctx: ServiceContext,
    provider: str,
    headers: dict[str, str],
    body: bytes,
    *,
    peer: str | None,
    job_hint: str | None,
) -> bytes:
    """Take one delivery for ``provider`` (as named in the path) and return the JSON reply's bytes.

    ``headers`` have lowercase names; a body longer than ``MAX_WEBHOOK_BYTES`` is cut there (its
    signature then fails). Every delivery is counted in the metrics by its outcome.

    Raises:
        CloudtunerError: the delivery is refused (unknown provider, wrong signature, sender not
            allowed); the caller turns it into the error reply.
    """
    name = provider.strip().lower()
    try:
        outcome = await webhook_service.ingest_webhook(
            ctx, name, headers, body[:MAX_WEBHOOK_BYTES], peer=peer, job_hint=job_hint
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
    return json.dumps(reply, separators=(",", ":")).encode()
