"""Users: create, list, change and delete them; passwords hashed with argon2.

Usernames are kept in lower case, so sign-in ignores case. The server always keeps one active
admin: demoting, disabling or deleting the last one is refused (``LastAdminError``), under a
lock on the admin rows so that two such changes at once cannot both pass. Disabling a user or
setting their password signs them out everywhere; their API keys stop working while they are
disabled. Deleting a user deletes their sessions and keys; their jobs stay.

A user may belong to one team (a lower-case name, set by admins). A job records its submitter's
team when it is submitted (:func:`find_submitter`), and the queue's per-team limit counts by it.
"""

from __future__ import annotations

import asyncio
import functools
import re
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from cloudtuner.core.errors import (
    InvalidRequestError,
    InvalidUsernameError,
    LastAdminError,
    UserExistsError,
    UserNotFoundError,
    WeakPasswordError,
)
from cloudtuner.core.ids import new_sortable_id
from cloudtuner.core.permissions import LOCAL_PRINCIPAL_ID, Principal
from cloudtuner.core.roles import Role, parse_role, permissions_for, sorted_names
from cloudtuner.db.engine import Database
from cloudtuner.db.tables import LoginThrottleRow, SessionRow, UserRow
from cloudtuner.schemas.auth import UpdateUserRequest, UserInfo

if TYPE_CHECKING:
    from argon2 import PasswordHasher

    from cloudtuner.services.context import ServiceContext

USERNAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._@-]{0,63}$")
TEAM_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024


def normalize_username(name: str) -> str:
    """Return ``name`` as stored: stripped and in lower case.

    Raises:
        InvalidUsernameError: it has characters a username may not have, or is too long.
    """
    username = name.strip().lower()
    if not USERNAME_PATTERN.fullmatch(username):
        raise InvalidUsernameError(
            f"{name!r} is not a valid username: use 1 to 64 letters, digits and . _ @ - "
            "(starting with a letter or digit)."
        )
    return username


def normalize_team(name: str | None) -> str | None:
    """Return a team name as stored (stripped, lower case), or None for no team (None or blank).

    Raises:
        InvalidRequestError: it has characters a team name may not have, or is too long.
    """
    if name is None or not name.strip():
        return None
    team = name.strip().lower()
    if not TEAM_PATTERN.fullmatch(team):
        raise InvalidRequestError(
            f"{name!r} is not a valid team name: use 1 to 64 letters, digits and . _ - "
            "(starting with a letter or digit)."
        )
    return team


def check_new_password(password: str) -> None:
    """Refuse a password too short (or too long) to be set.

    Raises:
        WeakPasswordError: it has fewer than 8 characters (or more than 1024).
    """
    if len(password) < MIN_PASSWORD_LENGTH:
        raise WeakPasswordError(f"A password needs at least {MIN_PASSWORD_LENGTH} characters.")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise WeakPasswordError(f"A password may have at most {MAX_PASSWORD_LENGTH} characters.")


@functools.cache
def _hasher() -> PasswordHasher:
    from argon2 import PasswordHasher

    # argon2id at OWASP's recommended cost (19 MiB, 2 passes, 1 lane): about 0.1 s per check on
    # one core, so a sign-in stays cheap for the server while guessing stays expensive. Hashes
    # made with other parameters still verify, and are redone at the next sign-in.
    return PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)


@functools.cache
def _dummy_hash() -> str:
    """A hash to check passwords against when the user does not exist, so timing tells nothing."""
    return _hasher().hash("cloudtuner: no such user")


async def hash_password(password: str) -> str:
    """Return the argon2id hash of ``password`` (computed in a worker thread)."""
    return await asyncio.to_thread(_hasher().hash, password)


def _verify(password_hash: str | None, password: str) -> bool:
    from argon2.exceptions import InvalidHashError, VerificationError

    try:
        return _hasher().verify(password_hash or _dummy_hash(), password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """Return True if ``password_hash`` was made with other parameters than today's."""
    from argon2.exceptions import InvalidHashError

    try:
        return _hasher().check_needs_rehash(password_hash)
    except InvalidHashError:
        return True


async def verify_password(password_hash: str | None, password: str) -> bool:
    """Return True if ``password`` matches ``password_hash``; None (no such user) never matches,
    but costs the same time."""
    return await asyncio.to_thread(_verify, password_hash, password)


def principal_for(user: UserRow) -> Principal:
    """Return the principal of a signed-in user: their id, name, role, team and role's permissions."""
    return Principal(
        id=user.id, name=user.username, permissions=permissions_for(Role(user.role)), role=user.role, team=user.team
    )


@dataclass(frozen=True)
class Submitter:
    """What a job records about who submitted it, beyond their id: their role and team."""

    role: Role
    team: str | None


async def find_submitter(ctx: ServiceContext, principal: Principal) -> Submitter:
    """Return the role and team jobs submitted by ``principal`` start with.

    Taken from the principal when its authenticator set them; otherwise (an API key: its owner)
    read from the user's row. The local principal of single-user mode is an admin with no team.
    A principal whose user no longer exists gets the least trusted role, viewer, and no team.
    """
    if principal.role is not None:
        return Submitter(role=Role(principal.role), team=principal.team)
    if principal.id == LOCAL_PRINCIPAL_ID:
        return Submitter(role=Role.ADMIN, team=None)
    async with ctx.db.read() as session:
        row = (await session.execute(select(UserRow.role, UserRow.team).where(UserRow.id == principal.id))).first()
    if row is None:
        return Submitter(role=Role.VIEWER, team=None)
    return Submitter(role=Role(row.role), team=row.team)


def user_info(user: UserRow, *, locked: bool = False) -> UserInfo:
    """Return the wire form of a user."""
    return UserInfo(
        id=user.id,
        username=user.username,
        role=user.role,
        team=user.team,
        permissions=sorted_names(permissions_for(Role(user.role))),
        active=user.active,
        locked=locked,
        created_at=user.created_at,
        last_login_at=user.last_login_at,
    )


def throttle_key_for_user(username: str) -> str:
    """Return the login-throttle key of an account."""
    return f"user:{username}"


async def find_user_row(session: AsyncSession, username: str) -> UserRow | None:
    """Return the user called ``username`` (already normalized), or None."""
    row: UserRow | None = await session.scalar(select(UserRow).where(UserRow.username == username))
    return row


async def _get_user_row(session: AsyncSession, name: str, *, lock: bool = False) -> UserRow:
    username = normalize_username(name)
    query = select(UserRow).where(UserRow.username == username)
    if lock:
        query = query.with_for_update()
    row = await session.scalar(query)
    if row is None:
        raise UserNotFoundError(f"No user is called {username!r}.")
    return row


async def _locked_usernames(ctx: ServiceContext, session: AsyncSession) -> set[str]:
    rows = await session.scalars(
        select(LoginThrottleRow.key).where(
            LoginThrottleRow.key.like("user:%"), LoginThrottleRow.locked_until > ctx.clock.now()
        )
    )
    return {key.removeprefix("user:") for key in rows}


async def has_admin(db: Database) -> bool:
    """Return True if at least one active admin exists."""
    async with db.read() as session:
        count = await session.scalar(
            select(func.count()).select_from(UserRow).where(UserRow.role == Role.ADMIN.value, UserRow.active)
        )
    return bool(count)


def new_user_row(name: str, password_hash: str, role: Role, team: str | None, now: datetime) -> UserRow:
    """Return the row of a new, active user who has never signed in (``name`` already normalized)."""
    return UserRow(
        id=new_sortable_id(),
        username=name,
        password_hash=password_hash,
        role=role.value,
        team=team,
        active=True,
        created_at=now,
        updated_at=now,
        last_login_at=None,
    )


async def create_user(
    ctx: ServiceContext, username: str, password: str, role: str | Role, team: str | None = None
) -> UserInfo:
    """Create a user (in ``team``, if given); the server is in multi-user mode from then on.

    Raises:
        InvalidUsernameError: the name is not a valid username.
        InvalidRequestError: the team name is not valid.
        WeakPasswordError: the password is too short.
        InvalidScopeError: no role has that name.
        UserExistsError: the name is taken.
    """
    name = normalize_username(username)
    check_new_password(password)
    role = role if isinstance(role, Role) else parse_role(role)
    team = normalize_team(team)
    password_hash = await hash_password(password)
    now = ctx.clock.now()
    async with ctx.db.transaction() as session:
        if await find_user_row(session, name) is not None:
            raise UserExistsError(f"A user called {name!r} already exists.")
        row = new_user_row(name, password_hash, role, team, now)
        session.add(row)
    ctx.user_presence.mark_present()
    return user_info(row)


async def list_users(ctx: ServiceContext) -> list[UserInfo]:
    """Return every user, by name."""
    async with ctx.db.read() as session:
        rows = (await session.scalars(select(UserRow).order_by(UserRow.username))).all()
        locked = await _locked_usernames(ctx, session)
    return [user_info(row, locked=row.username in locked) for row in rows]


async def get_user(ctx: ServiceContext, username: str) -> UserInfo:
    """Return one user.

    Raises:
        UserNotFoundError: no user has that name.
    """
    async with ctx.db.read() as session:
        row = await _get_user_row(session, username)
        locked = row.username in await _locked_usernames(ctx, session)
    return user_info(row, locked=locked)


async def _lock_admins(session: AsyncSession) -> list[str]:
    """Lock the active admins' rows, in id order, and return their ids.

    Every change that could remove an admin takes these locks first, before the row it changes,
    so two such changes queue instead of deadlocking, and the second sees what the first did.
    """
    admins = await session.scalars(
        select(UserRow.id)
        .where(UserRow.role == Role.ADMIN.value, UserRow.active)
        .order_by(UserRow.id)
        .with_for_update()
    )
    return list(admins.all())


def _ensure_admin_remains(admins: list[str], leaving: UserRow) -> None:
    """Refuse if ``leaving`` is the last of the active ``admins``."""
    if not [admin_id for admin_id in admins if admin_id != leaving.id]:
        raise LastAdminError(
            f"{leaving.username} is the last active admin: make another user admin before this change."
        )


async def revoke_user_sessions(session: AsyncSession, user_id: str, now: datetime, *, keep: str | None = None) -> None:
    """Sign a user out of every session (but ``keep``, the caller's own, if given)."""
    query = update(SessionRow).where(SessionRow.user_id == user_id, SessionRow.revoked_at.is_(None))
    if keep is not None:
        query = query.where(SessionRow.id != keep)
    await session.execute(query.values(revoked_at=now))


async def update_user(ctx: ServiceContext, username: str, change: UpdateUserRequest) -> UserInfo:
    """Apply ``change`` to a user. A ``team`` sent as null or "" takes the user out of their team;
    one left out keeps it. Their jobs keep the team they were submitted under.

    Raises:
        UserNotFoundError: no user has that name.
        InvalidScopeError: no role has the name given.
        InvalidRequestError: the team name is not valid.
        WeakPasswordError: the new password is too short.
        LastAdminError: the change would leave no active admin.
    """
    role = parse_role(change.role) if change.role is not None else None
    changes_team = "team" in change.model_fields_set
    team = normalize_team(change.team)
    password = change.password.get_secret_value() if change.password is not None else None
    if password is not None:
        check_new_password(password)
    password_hash = await hash_password(password) if password is not None else None
    now = ctx.clock.now()
    async with ctx.db.transaction() as session:
        admins = await _lock_admins(session)
        row = await _get_user_row(session, username, lock=True)
        was_admin = row.role == Role.ADMIN.value and row.active
        active = row.active if change.active is None else change.active
        stays_admin = (role or Role(row.role)) is Role.ADMIN and active
        if was_admin and not stays_admin:
            _ensure_admin_remains(admins, row)
        if role is not None:
            row.role = role.value
        if changes_team:
            row.team = team
        if change.active is not None:
            row.active = change.active
            if not change.active:
                await revoke_user_sessions(session, row.id, now)
        if password_hash is not None:
            row.password_hash = password_hash
            await revoke_user_sessions(session, row.id, now)
        if change.unlock or password_hash is not None:
            await session.execute(
                delete(LoginThrottleRow).where(LoginThrottleRow.key == throttle_key_for_user(row.username))
            )
        row.updated_at = now
        locked = row.username in await _locked_usernames(ctx, session)
    return user_info(row, locked=locked)


async def delete_user(ctx: ServiceContext, username: str) -> None:
    """Delete a user with their sessions and API keys; their jobs stay.

    Raises:
        UserNotFoundError: no user has that name.
        LastAdminError: they are the last active admin.
    """
    async with ctx.db.transaction() as session:
        admins = await _lock_admins(session)
        row = await _get_user_row(session, username, lock=True)
        if row.role == Role.ADMIN.value and row.active:
            _ensure_admin_remains(admins, row)
        await session.delete(row)
        await session.execute(
            delete(LoginThrottleRow).where(LoginThrottleRow.key == throttle_key_for_user(row.username))
        )


async def set_password(ctx: ServiceContext, username: str, password: str) -> UserInfo:
    """Set a user's password, unlock their account and sign them out everywhere.

    Raises:
        UserNotFoundError: no user has that name.
        WeakPasswordError: the password is too short.
    """
    from pydantic import SecretStr

    return await update_user(ctx, username, UpdateUserRequest(password=SecretStr(password), unlock=True))
