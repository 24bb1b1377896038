"""Sign-in, your account and your API keys: /api/auth/..., /api/cloud/auth/api-keys."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response

from cloudtuner.api.auth_request import clear_session_cookies, client_ip, set_session_cookies
from cloudtuner.api.deps import Context, CurrentAuth, requires, signed_in
from cloudtuner.core.errors import PermissionDeniedError
from cloudtuner.core.permissions import Permission, Principal
from cloudtuner.schemas.auth import (
    ApiKeyCreatedResponse,
    ApiKeyListResponse,
    ChangePasswordRequest,
    CreateApiKeyRequest,
    LoginRequest,
    LoginResponse,
    RevokeApiKeyResponse,
    SessionListResponse,
    SetupRequest,
    SetupResponse,
    WhoAmIResponse,
)
from cloudtuner.schemas.common import ErrorResponse, SuccessResponse
from cloudtuner.services import api_keys, setup_token
from cloudtuner.services import auth as auth_service

router = APIRouter(tags=["auth"])

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "The request is not valid (an unknown permission, a weak password)."},
    401: {"model": ErrorResponse, "description": "Not signed in, or the credentials are wrong."},
    403: {"model": ErrorResponse, "description": "Signed in, but without the permission this needs."},
    404: {"model": ErrorResponse, "description": "No such key or session of yours."},
    409: {"model": ErrorResponse, "description": "Single-user mode: there are no users yet (setup: users exist)."},
    422: {"model": ErrorResponse, "description": "A field is missing or has the wrong type."},
    429: {"model": ErrorResponse, "description": "Too many failed sign-ins; see Retry-After."},
}
SignedIn = Annotated[Principal, Depends(signed_in())]
OwnAccount = Annotated[Principal, Depends(requires(Permission.ACCOUNT_MANAGE))]


@router.post("/api/auth/login", response_model=LoginResponse, responses=ERRORS, summary="Sign in")
async def login(body: LoginRequest, request: Request, response: Response, ctx: Context) -> LoginResponse:
    """Check a username and password. The reply's `session_token` works as
    `Authorization: Bearer ...`; browsers also get it as an HttpOnly cookie, and must then send
    `X-CSRF-Token` (the reply's `csrf_token`) with every change. Repeated failures lock the
    account (and the address) for a while."""
    reply = await auth_service.login(
        ctx,
        body.username,
        body.password.get_secret_value(),
        source_ip=await client_ip(ctx, request),
        user_agent=request.headers.get("user-agent"),
    )
    await set_session_cookies(ctx, request, response, reply.session_token, reply.csrf_token, reply.expires_at)
    return reply


@router.post("/api/auth/setup", response_model=SetupResponse, responses=ERRORS, summary="Create the first admin")
async def setup(body: SetupRequest, request: Request, ctx: Context) -> SetupResponse:
    """While the server has no users, create the first admin with the one-time `setup_token`
    printed in the server's log at start; the server is in multi-user mode from then on. The
    token works once, for 24 h; once any user exists this is refused (`409 user_exists`). A wrong,
    used or expired token is `401 invalid_setup_token`; repeated failures block the address
    (`429`), as for sign-ins."""
    user = await setup_token.create_first_admin(
        ctx,
        body.setup_token.get_secret_value(),
        body.username,
        body.password.get_secret_value(),
        source_ip=await client_ip(ctx, request),
    )
    return SetupResponse(
        user=user,
        detail=f"Created admin {user.username}; the server is in multi-user mode now: sign in "
        "(POST /api/auth/login, or `cloudtuner login`).",
    )


@router.post("/api/auth/logout", response_model=SuccessResponse, responses=ERRORS, summary="Sign out")
async def logout(ctx: Context, auth: CurrentAuth, _principal: SignedIn, response: Response) -> SuccessResponse:
    """End the session this request was made with and clear the browser's cookies. (API keys
    are not sessions: revoke them instead.)"""
    await auth_service.logout(ctx, auth)
    clear_session_cookies(response)
    return SuccessResponse()


@router.get("/api/auth/me", response_model=WhoAmIResponse, responses=ERRORS, summary="Who am I")
async def who_am_i(ctx: Context, auth: CurrentAuth, _principal: SignedIn) -> WhoAmIResponse:
    """The server's mode, who the caller is taken for, and what this request may do."""
    return await auth_service.who_am_i(ctx, auth)


@router.get("/api/auth/sessions", response_model=SessionListResponse, responses=ERRORS, summary="Your sessions")
async def list_sessions(ctx: Context, auth: CurrentAuth, _principal: OwnAccount) -> SessionListResponse:
    """Your sessions that still work, newest first; `current` marks this one."""
    return await auth_service.list_sessions(ctx, auth)


@router.delete(
    "/api/auth/sessions/{session_id}", response_model=SuccessResponse, responses=ERRORS, summary="End a session"
)
async def revoke_session(session_id: str, ctx: Context, auth: CurrentAuth, _principal: OwnAccount) -> SuccessResponse:
    """Sign out one of your sessions (a lost laptop, say)."""
    await auth_service.revoke_session(ctx, auth, session_id)
    return SuccessResponse()


@router.post("/api/auth/password", response_model=SuccessResponse, responses=ERRORS, summary="Change your password")
async def change_password(
    body: ChangePasswordRequest, ctx: Context, auth: CurrentAuth, _principal: OwnAccount
) -> SuccessResponse:
    """Set a new password (at least 8 characters) after checking the current one. Your other
    sessions are signed out; this one stays."""
    await auth_service.change_password(
        ctx, auth, body.current_password.get_secret_value(), body.new_password.get_secret_value()
    )
    return SuccessResponse()


@router.post(
    "/api/cloud/auth/api-keys",
    status_code=201,
    response_model=ApiKeyCreatedResponse,
    responses=ERRORS,
    summary="Create an API key",
)
async def create_api_key(body: CreateApiKeyRequest, ctx: Context, principal: OwnAccount) -> ApiKeyCreatedResponse:
    """Create a key for yourself with `scoped_permissions` (e.g. `["job.submit", "job.view.own"]`)
    and an optional `expires_days`. It gets the permissions asked for that you hold; the others
    are listed in `dropped_permissions`. The whole key (`stk_...`) is in this reply only: send it
    as `Authorization: Bearer stk_...` or `X-API-Key: stk_...`."""
    return await api_keys.create_api_key(ctx, principal, body)


@router.get("/api/cloud/auth/api-keys", response_model=ApiKeyListResponse, responses=ERRORS, summary="List API keys")
async def list_api_keys(
    ctx: Context,
    principal: OwnAccount,
    all_users: Annotated[bool, Query(alias="all", description="Everyone's keys (needs user.manage).")] = False,
) -> ApiKeyListResponse:
    """Your API keys, newest first, with their scopes, status and last use; never the keys."""
    if all_users and not principal.can(Permission.USER_MANAGE):
        raise PermissionDeniedError("Listing everyone's API keys needs the user.manage permission.")
    return await api_keys.list_api_keys(ctx, principal, all_users=all_users)


@router.delete(
    "/api/cloud/auth/api-keys/{key_id}",
    response_model=RevokeApiKeyResponse,
    responses=ERRORS,
    summary="Revoke an API key",
)
async def revoke_api_key(key_id: str, ctx: Context, principal: OwnAccount) -> RevokeApiKeyResponse:
    """Revoke one of your keys (anyone's, with user.manage): it stops working at once."""
    return await api_keys.revoke_api_key(ctx, principal, key_id)
