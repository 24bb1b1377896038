"""API keys: ``stk_`` + 43 random characters, shown once, stored as their sha256.

A key is found by the sha256 of what the client sends, through a unique index: never by
scanning or by comparing keys one by one. Its permissions are the scopes it was created with,
intersected, on every request, with what its owner's role allows now, so a demoted or disabled
owner's keys lose their rights at once. ``last_used_at`` is written at most once a minute per key.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import or_, select, update

from cloudtuner.core.errors import ApiKeyNotFoundError, InvalidScopeError, InvalidTokenError, SingleUserModeError
from cloudtuner.core.ids import new_sortable_id
from cloudtuner.core.permissions import LOCAL_PRINCIPAL_ID, Permission, Principal
from cloudtuner.core.roles import Role, parse_scopes, permissions_for, sorted_names
from cloudtuner.db.tables import ApiKeyRow, UserRow
from cloudtuner.schemas.auth import (
    ApiKeyCreatedResponse,
    ApiKeyInfo,
    ApiKeyListResponse,
    ApiKeyStatus,
    CreateApiKeyRequest,
    RevokeApiKeyResponse,
)
from cloudtuner.services.access import Authentication

if TYPE_CHECKING:
    from cloudtuner.services.context import ServiceContext

KEY_PREFIX = "stk_"
DISPLAY_PREFIX_LENGTH = 12
LAST_USED_RESOLUTION = timedelta(seconds=60)


def token_hash(token: str) -> str:
    """Return the hex sha256 of a key or session token: what the store keeps and looks up."""
    return hashlib.sha256(token.encode()).hexdigest()


def is_api_key(token: str) -> bool:
    """Return True if ``token`` has the shape of an API key (``stk_...``)."""
    return token.startswith(KEY_PREFIX)


def _status(row: ApiKeyRow, now: datetime) -> ApiKeyStatus:
    if row.revoked_at is not None:
        return ApiKeyStatus.REVOKED
    if row.expires_at is not None and row.expires_at <= now:
        return ApiKeyStatus.EXPIRED
    return ApiKeyStatus.ACTIVE


def _info(row: ApiKeyRow, owner: str, now: datetime) -> ApiKeyInfo:
    return ApiKeyInfo(
        id=row.id,
        name=row.name,
        prefix=row.prefix,
        owner=owner,
        scoped_permissions=list(row.scopes),
        status=_status(row, now),
        created_at=row.created_at,
        expires_at=row.expires_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
    )


def _stored_scopes(names: list[str]) -> frozenset[Permission]:
    found = set()
    for name in names:
        try:
            found.add(Permission(name))
        except ValueError:
            continue  # a permission this version no longer has grants nothing
    return frozenset(found)


async def create_api_key(
    ctx: ServiceContext, principal: Principal, request: CreateApiKeyRequest
) -> ApiKeyCreatedResponse:
    """Create a key for the caller with the scopes asked for that the caller holds.

    Raises:
        SingleUserModeError: the server has no users, so a key would have no owner.
        InvalidScopeError: a scope is unknown, or none of those asked for is the caller's.
    """
    if principal.id == LOCAL_PRINCIPAL_ID:
        raise SingleUserModeError(
            "This server runs in single-user mode (no users), where every local request already has every "
            "permission. Create an admin with `cloudtuner admin create USERNAME --password-stdin`, sign in, "
            "then create API keys."
        )
    asked = parse_scopes(request.scoped_permissions)
    granted = asked & principal.permissions
    if not granted:
        raise InvalidScopeError(
            "None of the permissions asked for are yours to give: you hold "
            f"{', '.join(sorted_names(principal.permissions)) or 'none'}."
        )
    now = ctx.clock.now()
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKeyRow(
        id=new_sortable_id(),
        key_hash=token_hash(key),
        prefix=key[:DISPLAY_PREFIX_LENGTH],
        user_id=principal.id,
        name=request.name,
        scopes=sorted_names(granted),
        created_at=now,
        expires_at=now + timedelta(days=request.expires_days) if request.expires_days else None,
        last_used_at=None,
        revoked_at=None,
    )
    async with ctx.db.transaction() as session:
        session.add(row)
    info = _info(row, principal.name, now)
    return ApiKeyCreatedResponse(**info.model_dump(), key=key, dropped_permissions=sorted_names(asked - granted))


async def list_api_keys(ctx: ServiceContext, principal: Principal, *, all_users: bool = False) -> ApiKeyListResponse:
    """Return the caller's keys (everyone's with ``all_users``, for user managers), newest first."""
    query = select(ApiKeyRow, UserRow.username).join(UserRow, ApiKeyRow.user_id == UserRow.id)
    if not all_users:
        query = query.where(ApiKeyRow.user_id == principal.id)
    async with ctx.db.read() as session:
        rows = (await session.execute(query.order_by(ApiKeyRow.id.desc()))).all()
    now = ctx.clock.now()
    return ApiKeyListResponse(api_keys=[_info(row, owner, now) for row, owner in rows])


async def revoke_api_key(ctx: ServiceContext, principal: Principal, key_id: str) -> RevokeApiKeyResponse:
    """Revoke a key of the caller's (anyone's, for a holder of ``user.manage``). Revoking twice is fine.

    Raises:
        ApiKeyNotFoundError: no such key the caller may revoke.
    """
    now = ctx.clock.now()
    async with ctx.db.transaction() as session:
        found = (
            await session.execute(
                select(ApiKeyRow, UserRow.username)
                .join(UserRow, ApiKeyRow.user_id == UserRow.id)
                .where(ApiKeyRow.id == key_id)
                .with_for_update(of=ApiKeyRow)
            )
        ).one_or_none()
        if found is None or (found[0].user_id != principal.id and not principal.can(Permission.USER_MANAGE)):
            raise ApiKeyNotFoundError(f"No API key of yours has the id {key_id!r}.")
        row, owner = found
        if row.revoked_at is None:
            row.revoked_at = now
    return RevokeApiKeyResponse(api_key=_info(row, owner, now))


async def authenticate_key(ctx: ServiceContext, key: str) -> Authentication:
    """Return who a request made with API key ``key`` comes from, with the key's permissions.

    Raises:
        InvalidTokenError: the key is unknown, revoked or expired, or its owner is disabled.
    """
    now = ctx.clock.now()
    async with ctx.db.read() as session:
        found = (
            await session.execute(
                select(ApiKeyRow, UserRow)
                .join(UserRow, ApiKeyRow.user_id == UserRow.id)
                .where(ApiKeyRow.key_hash == token_hash(key))
            )
        ).one_or_none()
    if found is None:
        raise InvalidTokenError("This API key is not valid: check that it was copied whole, or create a new one.")
    row, user = found
    if row.revoked_at is not None:
        raise InvalidTokenError(f"This API key ({row.prefix}..., {row.name!r}) has been revoked.")
    if row.expires_at is not None and row.expires_at <= now:
        raise InvalidTokenError(
            f"This API key ({row.prefix}..., {row.name!r}) expired on {row.expires_at:%Y-%m-%d %H:%M} UTC."
        )
    if not user.active:
        raise InvalidTokenError(f"The owner of this API key ({user.username}) is disabled.")
    permissions = _stored_scopes(row.scopes) & permissions_for(Role(user.role))
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION:
        async with ctx.db.transaction() as session:
            await session.execute(
                update(ApiKeyRow)
                .where(
                    ApiKeyRow.id == row.id,
                    or_(ApiKeyRow.last_used_at.is_(None), ApiKeyRow.last_used_at < now - LAST_USED_RESOLUTION),
                )
                .values(last_used_at=now)
            )
    return Authentication(
        principal=Principal(id=user.id, name=user.username, permissions=permissions),
        via="api_key",
        credential_id=row.id,
        key_name=row.name,
        key_prefix=row.prefix,
    )
