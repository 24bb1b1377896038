"""The audit log: /api/audit (audit.view)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from cloudtuner.api.deps import Context, requires
from cloudtuner.core.permissions import Permission, Principal
from cloudtuner.schemas.audit import AuditListResponse, AuditVerifyResponse
from cloudtuner.schemas.common import ErrorResponse
from cloudtuner.services import audit

router = APIRouter(prefix="/api/audit", tags=["audit"])

ERRORS: dict[int | str, dict[str, Any]] = {
    422: {"model": ErrorResponse, "description": "A parameter has the wrong type."},
}
ViewAudit = Annotated[Principal, Depends(requires(Permission.AUDIT_VIEW))]


@router.get("", response_model=AuditListResponse, responses=ERRORS, summary="Read the audit log")
async def list_audit(
    ctx: Context,
    _principal: ViewAudit,
    limit: Annotated[int, Query(ge=1, le=audit.MAX_LIST_LIMIT, description="Entries per page.")] = 100,
    before: Annotated[int | None, Query(ge=1, description="next_before of the previous page.")] = None,
    actor: Annotated[str | None, Query(description="Only entries by this username.")] = None,
    action: Annotated[str | None, Query(description="Only this action, e.g. submit_job or login.")] = None,
) -> AuditListResponse:
    """Every recorded change, newest first: sign-ins, keys, tokens, jobs, settings, users;
    who, when, what, from where and how it ended."""
    return await audit.list_entries(ctx, limit=limit, before=before, actor=actor, action=action)


@router.get("/verify", response_model=AuditVerifyResponse, summary="Check the audit log's hash chain")
async def verify_audit(ctx: Context, _principal: ViewAudit) -> AuditVerifyResponse:
    """Recompute every entry's hash from the chain's start to its head. `valid: false` says
    which entry breaks the chain and why."""
    return await audit.verify_chain(ctx)
