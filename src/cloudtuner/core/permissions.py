"""Permissions: what a principal may do. Every API route declares the one it needs."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Permission(StrEnum):
    """A right to do one kind of thing. The values are the scope names API keys carry."""

    JOB_SUBMIT = "job.submit"
    JOB_VIEW_OWN = "job.view.own"
    JOB_VIEW_ALL = "job.view.all"
    JOB_CANCEL_OWN = "job.cancel.own"
    JOB_CANCEL_ALL = "job.cancel.all"
    JOB_DELETE_OWN = "job.delete.own"
    JOB_DELETE_ALL = "job.delete.all"
    JOB_SYNC = "job.sync"
    CONFIG_VIEW = "config.view"
    CONFIG_EDIT = "config.edit"
    PROVIDER_VIEW = "provider.view"
    PROVIDER_MANAGE = "provider.manage"
    WORKER_MANAGE = "worker.manage"
    QUEUE_MANAGE = "queue.manage"
    USER_MANAGE = "user.manage"
    AUDIT_VIEW = "audit.view"
    METRICS_VIEW = "metrics.view"
    STORAGE_MANAGE = "storage.manage"
    ACCOUNT_MANAGE = "account.manage"
    """Your own account: API keys, sessions, password (every role has it; a key may lack it)."""


ALL_PERMISSIONS: frozenset[Permission] = frozenset(Permission)

LOCAL_PRINCIPAL_ID = "local"


@dataclass(frozen=True)
class Principal:
    """Who is making a request, and what they may do.

    ``id`` owns the jobs this principal submits. In single-user mode every request is made by
    the local principal, which holds every permission and counts as an admin.

    ``role`` and ``team`` are the user's (an API key's owner's) when the authenticator knew them,
    None when it did not say: services that need them look the user up by ``id``
    (``services.users.find_submitter``). A user without a team also has ``team`` None.
    """

    id: str
    name: str
    permissions: frozenset[Permission] = field(default_factory=frozenset)
    role: str | None = None
    team: str | None = None

    def can(self, permission: Permission) -> bool:
        """Return True if this principal holds ``permission``."""
        return permission in self.permissions

    def can_any(self, *permissions: Permission) -> bool:
        """Return True if this principal holds at least one of ``permissions``."""
        return any(p in self.permissions for p in permissions)


LOCAL_PRINCIPAL = Principal(id=LOCAL_PRINCIPAL_ID, name="local", permissions=ALL_PERMISSIONS, role="admin")
