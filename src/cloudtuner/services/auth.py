"""Signing in and out, and telling who a request comes from.

Key contracts:

- **Modes.** With no users the server is in single-user mode: it runs only on a loopback address
  and every request is the local principal, whatever it carries. Once a user exists, every
  request to a non-public route needs a session token or an API key (``services.access``).
- **Sessions.** ``login`` checks the password (argon2) after the login throttle allows it,
  and creates a session whose token (``sess_`` + random) is returned once; the store keeps only
  its sha256, found through a unique index. A session ends at ``expires_at`` or when revoked
  (logout, password change, user disabled).
- **CSRF.** A session presented as the browser's cookie may change things only with the header
  ``X-CSRF-Token``: an HMAC of the session token, given in the sign-in reply (and as a readable
  cookie). A token sent in the Authorization header needs none: browsers never add that header
  by themselves.
- Every sign-in, successful or not, is written to the audit log here (the login route is public,
  so the audit middleware does not see who it was).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import delete, or_, select, update

from cloudtuner.core.errors import (
    AccountDisabledError,
    AuthenticationRequiredError,
    CloudtunerError,
    CsrfTokenError,
    InvalidCredentialsError,
    InvalidTokenError,
    SessionNotFoundError,
    SingleUserModeError,
)
from cloudtuner.core.ids import new_sortable_id
from cloudtuner.core.roles import sorted_names
from cloudtuner.db.tables import SessionRow, UserRow
from cloudtuner.schemas.auth import (
    AccessMode,
    ApiKeyRef,
    LoginResponse,
    SessionInfo,
    SessionListResponse,
    WhoAmIResponse,
)
from cloudtuner.services import api_keys, audit, login_throttle, users
from cloudtuner.services.access import LOCAL_AUTHENTICATION, Authentication
from cloudtuner.services.audit import AuditEvent

if TYPE_CHECKING:
    from cloudtuner.services.context import ServiceContext

SESSION_PREFIX = "sess_"
SESSION_TOUCH_RESOLUTION = timedelta(seconds=60)
_CSRF_LABEL = b"cloudtuner csrf v1"


@dataclass(frozen=True)
class PresentedCredentials:
    """What a request carries to prove who it is, as read from its headers.

    ``token`` comes from ``Authorization: Bearer``, the password of ``Authorization: Basic``, or
    ``X-API-Key``; ``cookie_token`` from the session cookie; ``csrf_token`` from ``X-CSRF-Token``.
    """

    token: str | None = None
    cookie_token: str | None = None
    csrf_token: str | None = None


def is_session_token(token: str) -> bool:
    """Return True if ``token`` has the shape of a session token."""
    return token.startswith(SESSION_PREFIX)


def csrf_token_for(session_token: str) -> str:
    """Return the CSRF token that goes with a session token."""
    return hmac.new(session_token.encode(), _CSRF_LABEL, hashlib.sha256).hexdigest()


# --- who is calling -----------------------------------------------------------------------------


async def authenticate(ctx: ServiceContext, presented: PresentedCredentials, *, changes: bool) -> Authentication:
    """Return who a request comes from; ``changes`` is True for methods that may change state.

    Raises:
        AuthenticationRequiredError: multi-user mode and no credentials (or, with no users, a
            server reachable from other machines).
        InvalidTokenError: the token or key is unknown, expired or revoked.
        CsrfTokenError: a change made with the session cookie lacks the right X-CSRF-Token.
    """
    if not await ctx.user_presence.multi_user(ctx.db):
        if ctx.settings.binds_loopback_only:
            return LOCAL_AUTHENTICATION
        raise AuthenticationRequiredError(
            "No admin exists yet: create one on the server's machine with "
            "`cloudtuner admin create USERNAME --password-stdin`."
        )
    if presented.token:
        if api_keys.is_api_key(presented.token):
            return await api_keys.authenticate_key(ctx, presented.token)
        if is_session_token(presented.token):
            return await authenticate_session(ctx, presented.token)
        raise InvalidTokenError(
            "The token sent is neither an API key (stk_...) nor a session token: sign in again or use an API key."
        )
    if presented.cookie_token:
        if changes and not (
            presented.csrf_token and hmac.compare_digest(presented.csrf_token, csrf_token_for(presented.cookie_token))
        ):
            raise CsrfTokenError()
        return await authenticate_session(ctx, presented.cookie_token)
    raise AuthenticationRequiredError(
        "Sign in (POST /api/auth/login, or `cloudtuner login`) or send an API key: "
        "Authorization: Bearer stk_... or X-API-Key: stk_...."
    )


async def authenticate_session(ctx: ServiceContext, token: str) -> Authentication:
    """Return who holds session ``token``.

    Raises:
        InvalidTokenError: no such session, or it has ended, or its user is disabled.
    """
    now = ctx.clock.now()
    async with ctx.db.read() as session:
        found = (
            await session.execute(
                select(SessionRow, UserRow)
                .join(UserRow, SessionRow.user_id == UserRow.id)
                .where(SessionRow.token_hash == api_keys.token_hash(token))
            )
        ).one_or_none()
    if found is None:
        raise InvalidTokenError("This session is not valid: sign in again.")
    row, user = found
    if row.revoked_at is not None:
        raise InvalidTokenError("This session was signed out: sign in again.")
    if row.expires_at <= now:
        raise InvalidTokenError("This session has expired: sign in again.")
    if not user.active:
        raise InvalidTokenError(f"The account {user.username} is disabled.")
    if now - row.last_seen_at >= SESSION_TOUCH_RESOLUTION:
        async with ctx.db.transaction() as session:
            await session.execute(
                update(SessionRow)
                .where(SessionRow.id == row.id, SessionRow.last_seen_at < now - SESSION_TOUCH_RESOLUTION)
                .values(last_seen_at=now)
            )
    return Authentication(principal=users.principal_for(user), via="session", credential_id=row.id)


# --- signing in and out -------------------------------------------------------------------------


def sign_in_attempt(
    username: str, *, via: str, action: str, target: str, source_ip: str
) -> tuple[str | None, AuditEvent]:
    """Return ``username`` normalized (None if it is not a valid name) and the audit entry of an
    attempt made with it: anonymous and failed until the caller records it otherwise."""
    try:
        name: str | None = users.normalize_username(username)
    except CloudtunerError:
        name = None
    attempt = AuditEvent(
        actor_id="anonymous",
        actor_name=(name or username.strip().lower())[:64] or "?",
        via=via,
        action=action,
        target=target,
        outcome="failed",
        source_ip=source_ip or None,
    )
    return name, attempt


async def login(
    ctx: ServiceContext, username: str, password: str, *, source_ip: str, user_agent: str | None = None
) -> LoginResponse:
    """Check a username and password and open a session; record the attempt in the audit log.

    Raises:
        LoginThrottledError: too many failures for this account or address just now.
        InvalidCredentialsError: wrong username or password (which of the two is not said).
        AccountDisabledError: right password, but the account is disabled.
        SingleUserModeError: the server has no users, so there is nobody to sign in as.
    """
    name, attempt = sign_in_attempt(
        username, via="password", action="login", target="/api/auth/login", source_ip=source_ip
    )
    limits = {login_throttle.address_key(source_ip): ctx.settings.login_max_failures_per_address}
    if name is not None:
        limits[users.throttle_key_for_user(name)] = ctx.settings.login_max_failures
    try:
        reply = await _login(ctx, name, password, limits, source_ip=source_ip, user_agent=user_agent)
    except CloudtunerError as exc:
        status = {"too_many_login_attempts": 429, "account_disabled": 403, "single_user_mode": 409}.get(exc.code, 401)
        await ctx.audit.record(dataclasses.replace(attempt, status=status, detail={"error": exc.code}))
        raise
    await ctx.audit.record(
        dataclasses.replace(
            attempt, actor_id=reply.user.id, actor_name=reply.user.username, outcome="success", status=200
        )
    )
    return reply


async def _login(
    ctx: ServiceContext,
    name: str | None,
    password: str,
    limits: dict[str, int],
    *,
    source_ip: str,
    user_agent: str | None,
) -> LoginResponse:
    if not await ctx.user_presence.multi_user(ctx.db):
        raise SingleUserModeError(
            "This server has no users (single-user mode): every local request may already do everything. "
            "To add users, create an admin with `cloudtuner admin create USERNAME --password-stdin`, or with "
            "the one-time setup token printed in the server's log at start (POST /api/auth/setup)."
        )
    address = login_throttle.address_key(source_ip)
    await login_throttle.begin_attempt(ctx, limits)
    row: UserRow | None = None
    if name is not None:
        async with ctx.db.read() as session:
            row = await users.find_user_row(session, name)
    if not await users.verify_password(row.password_hash if row else None, password) or row is None:
        locked = await login_throttle.attempt_failed(ctx, limits)
        raise locked or InvalidCredentialsError()
    await login_throttle.attempt_succeeded(ctx, users.throttle_key_for_user(row.username), address)
    if not row.active:
        raise AccountDisabledError()
    new_hash = await users.hash_password(password) if users.needs_rehash(row.password_hash) else None
    now = ctx.clock.now()
    token = SESSION_PREFIX + secrets.token_urlsafe(32)
    expires_at = now + timedelta(hours=ctx.settings.session_hours)
    async with ctx.db.transaction() as session:
        session.add(
            SessionRow(
                id=new_sortable_id(),
                token_hash=api_keys.token_hash(token),
                user_id=row.id,
                created_at=now,
                expires_at=expires_at,
                last_seen_at=now,
                revoked_at=None,
                source_ip=source_ip[:64] or None,
                user_agent=(user_agent or "")[:255] or None,
            )
        )
        user = await session.get(UserRow, row.id, with_for_update=True)
        if user is not None:
            user.last_login_at = now
            if new_hash is not None:
                user.password_hash = new_hash
            row = user
    return LoginResponse(
        session_token=token, csrf_token=csrf_token_for(token), expires_at=expires_at, user=users.user_info(row)
    )


async def logout(ctx: ServiceContext, auth: Authentication) -> bool:
    """End the session a request was made with; return False if it was not made with a session."""
    if auth.via != "session" or auth.credential_id is None:
        return False
    async with ctx.db.transaction() as session:
        await session.execute(
            update(SessionRow)
            .where(SessionRow.id == auth.credential_id, SessionRow.revoked_at.is_(None))
            .values(revoked_at=ctx.clock.now())
        )
    return True


async def list_sessions(ctx: ServiceContext, auth: Authentication) -> SessionListResponse:
    """Return the caller's sessions that still work, newest first."""
    now = ctx.clock.now()
    async with ctx.db.read() as session:
        rows = (
            await session.scalars(
                select(SessionRow)
                .where(
                    SessionRow.user_id == auth.principal.id,
                    SessionRow.revoked_at.is_(None),
                    SessionRow.expires_at > now,
                )
                .order_by(SessionRow.id.desc())
            )
        ).all()
    return SessionListResponse(
        sessions=[
            SessionInfo(
                id=row.id,
                created_at=row.created_at,
                expires_at=row.expires_at,
                last_seen_at=row.last_seen_at,
                source_ip=row.source_ip,
                user_agent=row.user_agent,
                current=auth.via == "session" and row.id == auth.credential_id,
            )
            for row in rows
        ]
    )


async def revoke_session(ctx: ServiceContext, auth: Authentication, session_id: str) -> None:
    """Sign out one of the caller's sessions.

    Raises:
        SessionNotFoundError: the caller has no session with that id.
    """
    async with ctx.db.transaction() as session:
        result = await session.execute(
            update(SessionRow)
            .where(SessionRow.id == session_id, SessionRow.user_id == auth.principal.id)
            .values(revoked_at=ctx.clock.now())
        )
        if not result.rowcount:  # type: ignore[attr-defined]
            raise SessionNotFoundError(f"You have no session with the id {session_id!r}.")


async def change_password(ctx: ServiceContext, auth: Authentication, current: str, new: str) -> None:
    """Change the caller's password after checking the current one; sign out their other sessions.

    Raises:
        InvalidCredentialsError: the current password is wrong.
        WeakPasswordError: the new password is too short.
    """
    users.check_new_password(new)
    async with ctx.db.read() as session:
        row = await session.get(UserRow, auth.principal.id)
    if row is None or not await users.verify_password(row.password_hash, current):
        raise InvalidCredentialsError("The current password is wrong.")
    new_hash = await users.hash_password(new)
    now = ctx.clock.now()
    async with ctx.db.transaction() as session:
        user = await session.get(UserRow, auth.principal.id, with_for_update=True)
        if user is None:
            raise InvalidCredentialsError("The current password is wrong.")
        user.password_hash = new_hash
        user.updated_at = now
        keep = auth.credential_id if auth.via == "session" else None
        await users.revoke_user_sessions(session, user.id, now, keep=keep)


async def who_am_i(ctx: ServiceContext, auth: Authentication) -> WhoAmIResponse:
    """Return who the caller is taken for and what they may do."""
    permissions = sorted_names(auth.principal.permissions)
    if auth.via == "local":
        return WhoAmIResponse(mode=AccessMode.SINGLE_USER, via="local", permissions=permissions)
    async with ctx.db.read() as session:
        row = await session.get(UserRow, auth.principal.id)
    key = None
    if auth.via == "api_key" and auth.credential_id is not None:
        key = ApiKeyRef(id=auth.credential_id, name=auth.key_name or "", prefix=auth.key_prefix or "")
    return WhoAmIResponse(
        mode=AccessMode.MULTI_USER,
        via=auth.via,
        user=users.user_info(row) if row else None,
        permissions=permissions,
        api_key=key,
    )


async def purge_expired_sessions(ctx: ServiceContext, *, keep_days: float = 1.0) -> int:
    """Delete sessions that ended more than ``keep_days`` ago; return how many."""
    cutoff = ctx.clock.now() - timedelta(days=keep_days)
    async with ctx.db.transaction() as session:
        result = await session.execute(
            delete(SessionRow).where(or_(SessionRow.expires_at < cutoff, SessionRow.revoked_at < cutoff))
        )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def housekeeping(ctx: ServiceContext) -> None:
    """Hourly upkeep: delete ended sessions and stale sign-in counts; apply audit retention."""
    await purge_expired_sessions(ctx)
    await login_throttle.purge_stale(ctx)
    await audit.apply_retention(ctx)
