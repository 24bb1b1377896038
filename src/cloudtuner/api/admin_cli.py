"""`cloudtuner admin ...`: run on the server's machine, writing to its job store directly.

Every other client command talks to a server over HTTP. Creating the first admin cannot: until
an admin exists there is nobody to sign in as (and a server bound to a public address refuses to
start). So these commands open the store named by ``--data-dir`` and ``CLOUDTUNER_DATABASE_URL``
themselves, as the server would, and need the same access to it as the server.

``cloudtuner.cli`` loads this module by its import string (like ``cloudtuner server`` loads
``api.serve``), so the client packages keep no static import of server code and the
import-linter contract "the client side never imports the server side" holds without an
exception. It lives in ``api`` because that is the layer allowed to assemble the server's parts.
"""

from __future__ import annotations

import asyncio
import getpass
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from cloudtuner.core.clock import SystemClock
from cloudtuner.core.errors import ConfigurationError
from cloudtuner.core.roles import Role
from cloudtuner.db import migrate
from cloudtuner.db.engine import Database
from cloudtuner.providers.registry import ProviderRegistry
from cloudtuner.services import users
from cloudtuner.services.audit import AuditEvent
from cloudtuner.services.config_history import ConfigHistory
from cloudtuner.services.context import ServiceContext
from cloudtuner.services.secrets import SecretBox, SecretStore
from cloudtuner.settings import Settings

T = TypeVar("T")


def _settings(data_dir: Path | None) -> Settings:
    from pydantic import ValidationError

    try:
        return Settings(**({"data_dir": data_dir} if data_dir is not None else {}))  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigurationError(f"invalid settings: {problems}") from None


async def _with_store(settings: Settings, work: Callable[[ServiceContext], Awaitable[T]]) -> T:
    """Migrate the store, run ``work`` with a context on it, and close it."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise ConfigurationError(f"cannot create the data dir {settings.data_dir}: {exc.strerror}") from None
    db = Database(settings.resolved_database_url)
    try:
        try:
            await migrate.upgrade(db)
        except (OSError, SQLAlchemyError) as exc:
            reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
            raise ConfigurationError(f"cannot open the job store ({db.dialect.name}): {reason}") from None
        secret_key = settings.secret_key.get_secret_value() if settings.secret_key else None
        clock = SystemClock()
        ctx = ServiceContext(
            settings=settings,
            db=db,
            providers=ProviderRegistry(),
            config_history=ConfigHistory(settings.config_history_dir),
            secrets=SecretStore(db, SecretBox(settings.secret_key_file, secret_key), clock),
            clock=clock,
        )
        return await work(ctx)
    finally:
        await db.dispose()


def _operator() -> str:
    """Return who runs the command, for the audit log: ``user@host``."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"[:255]


async def _record(ctx: ServiceContext, action: str, username: str, detail: dict[str, str]) -> None:
    await ctx.audit.record(
        AuditEvent(
            actor_id="cli",
            actor_name=_operator(),
            via="cli",
            action=action,
            target=f"/api/users/{username}",
            outcome="success",
            source_ip="local",
            detail=detail,
        )
    )


def create_admin(username: str, password: str, data_dir: Path | None, role: str = Role.ADMIN.value) -> str:
    """Create a user (an admin unless ``role`` says otherwise) in the store; return what was done.

    Raises:
        CloudtunerError: the store cannot be opened, or the user cannot be created (name taken,
            invalid name, password too short, unknown role). Its message is one sentence.
    """
    settings = _settings(data_dir)

    async def work(ctx: ServiceContext) -> str:
        user = await users.create_user(ctx, username, password, role)
        await _record(ctx, "create_user", user.username, {"role": user.role})
        return (
            f"Created {user.role} {user.username} in {settings.data_dir}. The server is in multi-user mode "
            "now (within 2 s if it is running): sign in with `cloudtuner login`."
        )

    return asyncio.run(_with_store(settings, work))


def reset_password(username: str, password: str, data_dir: Path | None) -> str:
    """Set a user's password, lift any lockout and sign them out everywhere; return what was done.

    Raises:
        CloudtunerError: the store cannot be opened, no such user, or the password is too short.
    """
    settings = _settings(data_dir)

    async def work(ctx: ServiceContext) -> str:
        user = await users.set_password(ctx, username, password)
        await _record(ctx, "reset_password", user.username, {})
        return f"Set a new password for {user.username}; their sessions were signed out."

    return asyncio.run(_with_store(settings, work))
