"""Which access mode the server is in (single-user: no users; multi-user: users exist), and who
a request comes from.

The answer lives in the database (the ``users`` table), so every server process on one database
agrees. Each process caches it: once users are seen the process stays multi-user (the last
admin cannot be removed through cloudtuner); while none are seen it asks again at most every
``RECHECK_SECONDS``, so an admin created by `cloudtuner admin create` or by another process
takes effect within that time. A user created through this process takes effect at once.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from sqlalchemy import exists, select

from cloudtuner.core.permissions import LOCAL_PRINCIPAL, Principal
from cloudtuner.db.engine import Database
from cloudtuner.db.tables import UserRow

RECHECK_SECONDS = 2.0


async def any_users(db: Database) -> bool:
    """Return True if at least one user exists (active or not)."""
    async with db.read() as session:
        return bool(await session.scalar(select(exists().where(UserRow.id.is_not(None)))))


class UserPresence:
    """This process's cached answer to "are there users?"."""

    def __init__(self) -> None:
        self._known = False
        self._checked_at = float("-inf")
        self._pending: asyncio.Future[bool] | None = None

    def mark_present(self) -> None:
        """Record that a user exists (this process just created one)."""
        self._known = True

    async def multi_user(self, db: Database) -> bool:
        """Return True if the server has users, asking the database at most every RECHECK_SECONDS."""
        if self._known:
            return True
        if time.monotonic() - self._checked_at < RECHECK_SECONDS:
            return False
        if self._pending is None or self._pending.done():
            # One query at a time: requests arriving meanwhile wait for the same answer.
            self._pending = asyncio.ensure_future(any_users(db))
        pending = self._pending
        try:
            found = await asyncio.shield(pending)
        finally:
            if self._pending is pending and pending.done():
                self._pending = None
        self._checked_at = time.monotonic()
        self._known = self._known or found
        return self._known


@dataclass(frozen=True)
class Authentication:
    """Who a request comes from and how they proved it.

    ``via`` is ``local`` (single-user mode), ``session`` or ``api_key``; ``credential_id`` is the
    session's or key's id (None for local).
    """

    principal: Principal
    via: str
    credential_id: str | None = None
    key_name: str | None = None
    key_prefix: str | None = None


LOCAL_AUTHENTICATION = Authentication(principal=LOCAL_PRINCIPAL, via="local")
