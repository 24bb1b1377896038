"""The one-time setup token: creating the first admin over HTTP, without shell access to the store.

Key contracts:

- **Issued at start, only while there are no users** (single-user mode, so a loopback address:
  a server on another address with no admin refuses to start). :func:`issue_setup_token` makes
  ``setup_`` + 32 random bytes (URL-safe) and returns it once, for the one log line that
  announces it (:func:`announce_setup_token`, at INFO, with the curl request to send);
  nothing else ever logs, stores or returns it.
- **Only its sha256 is kept**, in the job store (the settings document ``setup_tokens``), with
  its expiry (``SETUP_TOKEN_LIFETIME`` after the start that issued it). Every server process on one
  store issues its own token, and any of them may be used, so the token works whichever process
  the request reaches. A start that finds users deletes the document.
- **Single use.** :func:`create_first_admin` checks the token, then, in one write transaction
  (``SELECT ... FOR UPDATE`` on the document; SQLite's write lock), checks it again, checks that
  no user exists, inserts the admin and deletes the document: of two requests with the same
  token one wins and the other is refused, and a user committed first by ``cloudtuner admin
  create`` makes the setup refused. The server is in multi-user mode from then on (other
  processes within ``access.RECHECK_SECONDS``).
- **Refusals.** Once any user exists: ``UserExistsError`` (409), before the token is looked at.
  A wrong, used or expired token: ``InvalidSetupTokenError`` (401). Attempts are counted against
  the client address by ``services.login_throttle``, as sign-ins are (``429`` when blocked).
  Every attempt is written to the audit log (action ``setup``), the token never.
"""

from __future__ import annotations

import dataclasses
import hmac
import logging
import secrets
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from cloudtuner.core.errors import CloudtunerError, InvalidSetupTokenError, UserExistsError
from cloudtuner.core.roles import Role
from cloudtuner.db.tables import SettingsDocumentRow, UserRow
from cloudtuner.schemas.auth import UserInfo
from cloudtuner.services import api_keys, audit, login_throttle, users
from cloudtuner.services.auth import sign_in_attempt

if TYPE_CHECKING:
    from cloudtuner.services.context import ServiceContext
    from cloudtuner.settings import Settings

log = logging.getLogger(__name__)

SETUP_TOKEN_PREFIX = "setup_"  # noqa: S105 - the format prefix, not a secret
SETUP_TOKEN_LIFETIME = timedelta(hours=24)
SETUP_PATH = "/api/auth/setup"
SCOPE = "setup_tokens"
"""The settings document holding ``{"tokens": [{"hash": sha256 hex, "expires_at": ISO time}]}``."""
MAX_KEPT = 16
"""Tokens kept at most (one per start within the lifetime): the newest."""

_ERROR_STATUS = {"user_exists": 409, "too_many_login_attempts": 429}


def _live_tokens(document: dict[str, Any] | None, now: datetime) -> list[dict[str, str]]:
    """Return the unexpired entries of a ``setup_tokens`` document."""
    entries = (document or {}).get("tokens") or []
    return [
        entry
        for entry in entries
        if isinstance(entry, dict)
        and isinstance(entry.get("hash"), str)
        and isinstance(entry.get("expires_at"), str)
        and datetime.fromisoformat(entry["expires_at"]) > now
    ]


def _matches(entries: list[dict[str, str]], token_hash: str) -> bool:
    return any(hmac.compare_digest(entry["hash"], token_hash) for entry in entries)


async def _any_users(session: AsyncSession) -> bool:
    return bool(await session.scalar(select(exists().where(UserRow.id.is_not(None)))))


async def issue_setup_token(ctx: ServiceContext) -> str | None:
    """At start: if the store has no users, make a setup token, keep its hash and return it.

    Returns None (and forgets every earlier token) when users exist, or when the server is not
    loopback-only (it would not have started without an admin anyway). The caller logs the
    token once, with :func:`setup_instructions` (as :func:`announce_setup_token` does), and
    keeps it nowhere.
    """
    now = ctx.clock.now()
    async with ctx.db.transaction() as session:
        if await _any_users(session) or not ctx.settings.binds_loopback_only:
            await session.execute(delete(SettingsDocumentRow).where(SettingsDocumentRow.scope == SCOPE))
            return None
        # Several processes may start at once: the document is made if missing (no conflict),
        # then locked, so that each adds its token to the others'.
        # Both dialects' INSERTs have on_conflict_do_nothing; the declared return type does not.
        make: Any = ctx.db.dialect.insert(SettingsDocumentRow.__table__)  # type: ignore[arg-type]
        await session.execute(
            make.values(scope=SCOPE, document={"tokens": []}, updated_at=now).on_conflict_do_nothing(
                index_elements=["scope"]
            )
        )
        row = await session.get(SettingsDocumentRow, SCOPE, with_for_update=True, populate_existing=True)
        assert row is not None  # inserted above or by another process
        token = SETUP_TOKEN_PREFIX + secrets.token_urlsafe(32)
        entry = {"hash": api_keys.token_hash(token), "expires_at": (now + SETUP_TOKEN_LIFETIME).isoformat()}
        row.document = {"tokens": [*_live_tokens(row.document, now), entry][-MAX_KEPT:]}
        row.updated_at = now
    return token


async def announce_setup_token(ctx: ServiceContext) -> None:
    """At start: if the store has no users, issue a setup token and log it, in one INFO line.

    That line is the only place the token is ever written; the token is not kept in memory.
    """
    token = await issue_setup_token(ctx)
    if token is not None:
        log.info("%s", setup_instructions(ctx.settings, token))


def setup_instructions(settings: Settings, token: str) -> str:
    """Return the one log line that announces ``token``: what it is for and the request to send."""
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    hours = int(SETUP_TOKEN_LIFETIME.total_seconds() // 3600)
    body = f'{{"setup_token": "{token}", "username": "admin", "password": "CHOOSE-A-PASSWORD"}}'
    return (
        "No users yet (single-user mode). To switch to multi-user mode, create the first admin with this "
        f"one-time setup token (valid once, for {hours} h, until a user exists): "
        f"curl -X POST http://{host}:{settings.port}{SETUP_PATH} -H 'Content-Type: application/json' -d '{body}'"
    )


async def create_first_admin(
    ctx: ServiceContext, token: str, username: str, password: str, *, source_ip: str
) -> UserInfo:
    """Create the first admin with a setup token, which then stops working; record the attempt.

    Raises:
        UserExistsError: the server already has users (its setup is done).
        InvalidUsernameError: the name is not a valid username.
        WeakPasswordError: the password is too short (or too long).
        LoginThrottledError: too many failed attempts from this address just now.
        InvalidSetupTokenError: the token is wrong, already used or expired.
    """
    _name, attempt = sign_in_attempt(
        username, via="setup_token", action="setup", target=SETUP_PATH, source_ip=source_ip
    )
    try:
        user = await _create_first_admin(ctx, token, username, password, source_ip=source_ip)
    except CloudtunerError as exc:
        status = 401 if isinstance(exc, InvalidSetupTokenError) else _ERROR_STATUS.get(exc.code, 400)
        await ctx.audit.record(
            dataclasses.replace(attempt, outcome=audit.outcome_for(status), status=status, detail={"error": exc.code})
        )
        raise
    await ctx.audit.record(
        dataclasses.replace(
            attempt,
            actor_id=user.id,
            actor_name=user.username,
            outcome="success",
            status=200,
            detail={"role": user.role},
        )
    )
    return user


async def _create_first_admin(
    ctx: ServiceContext, token: str, username: str, password: str, *, source_ip: str
) -> UserInfo:
    if await ctx.user_presence.multi_user(ctx.db):
        raise _setup_done()
    name = users.normalize_username(username)
    users.check_new_password(password)
    address = login_throttle.address_key(source_ip)
    limits = {address: ctx.settings.login_max_failures_per_address}
    await login_throttle.begin_attempt(ctx, limits)
    token_hash = api_keys.token_hash(token)
    async with ctx.db.read() as session:
        row = await session.get(SettingsDocumentRow, SCOPE)
        valid = _matches(_live_tokens(row.document if row else None, ctx.clock.now()), token_hash)
    if not valid:
        locked = await login_throttle.attempt_failed(ctx, limits)
        raise locked or InvalidSetupTokenError()
    await login_throttle.attempt_succeeded(ctx, None, address)
    password_hash = await users.hash_password(password)
    now = ctx.clock.now()
    async with ctx.db.transaction() as session:
        row = await session.get(SettingsDocumentRow, SCOPE, with_for_update=True, populate_existing=True)
        if await _any_users(session):
            raise _setup_done()
        if row is None or not _matches(_live_tokens(row.document, now), token_hash):
            raise InvalidSetupTokenError()
        user = users.new_user_row(name, password_hash, Role.ADMIN, None, now)
        session.add(user)
        await session.delete(row)
    ctx.user_presence.mark_present()
    return users.user_info(user)


def _setup_done() -> UserExistsError:
    return UserExistsError(
        "This server already has users, so setup tokens no longer work: sign in instead "
        "(POST /api/auth/login, or `cloudtuner login`), and ask an admin for an account."
    )
