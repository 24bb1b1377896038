"""Roles: named sets of permissions that users are given, and the scope names API keys carry.

A user holds the permissions of their role. An API key holds the scopes it was created with,
intersected with what its owner may do *now*: demoting a user narrows their keys at once.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from cloudtuner.core.errors import InvalidScopeError
from cloudtuner.core.permissions import ALL_PERMISSIONS, Permission


class Role(StrEnum):
    """What a user is on this server, from least to most trusted."""

    VIEWER = "viewer"
    """Reads everything (every job, configs, provider status, metrics); changes nothing."""
    RESEARCHER = "researcher"
    """Submits jobs and acts on their own; edits saved configs."""
    LEAD = "lead"
    """A researcher who also sees and acts on everyone's jobs, and runs workers and the queue."""
    ADMIN = "admin"
    """Everything: provider tokens, users, the audit log, storage keys."""


_VIEWER = frozenset(
    {
        Permission.JOB_VIEW_OWN,
        Permission.JOB_VIEW_ALL,
        Permission.CONFIG_VIEW,
        Permission.PROVIDER_VIEW,
        Permission.METRICS_VIEW,
        Permission.ACCOUNT_MANAGE,
    }
)
_RESEARCHER = frozenset(
    {
        Permission.JOB_SUBMIT,
        Permission.JOB_VIEW_OWN,
        Permission.JOB_CANCEL_OWN,
        Permission.JOB_DELETE_OWN,
        Permission.JOB_SYNC,
        Permission.CONFIG_VIEW,
        Permission.CONFIG_EDIT,
        Permission.PROVIDER_VIEW,
        Permission.METRICS_VIEW,
        Permission.ACCOUNT_MANAGE,
    }
)
_LEAD = _RESEARCHER | {
    Permission.JOB_VIEW_ALL,
    Permission.JOB_CANCEL_ALL,
    Permission.JOB_DELETE_ALL,
    Permission.WORKER_MANAGE,
    Permission.QUEUE_MANAGE,
}

ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.VIEWER: _VIEWER,
    Role.RESEARCHER: _RESEARCHER,
    Role.LEAD: frozenset(_LEAD),
    Role.ADMIN: ALL_PERMISSIONS,
}


def permissions_for(role: Role) -> frozenset[Permission]:
    """Return the permissions a user of ``role`` holds."""
    return ROLE_PERMISSIONS[role]


def parse_role(name: str) -> Role:
    """Return the role called ``name`` (any case).

    Raises:
        InvalidScopeError: no role has that name.
    """
    try:
        return Role(name.strip().lower())
    except ValueError:
        known = ", ".join(r.value for r in Role)
        raise InvalidScopeError(f"Unknown role {name!r}; use one of: {known}.") from None


def parse_scopes(names: Iterable[str]) -> frozenset[Permission]:
    """Return the permissions named by ``names``.

    A name is a permission (``job.submit``), a family ending in ``.*`` (``job.*``, ``config.*``:
    every permission under it) or ``*`` (every permission).

    Raises:
        InvalidScopeError: a name is none of these; the message lists the valid names.
    """
    found: set[Permission] = set()
    for raw in names:
        name = raw.strip().lower()
        if name == "*":
            found |= ALL_PERMISSIONS
            continue
        if name.endswith(".*"):
            family = {p for p in Permission if p.value.startswith(name[:-1])}
            if family:
                found |= family
                continue
        else:
            try:
                found.add(Permission(name))
                continue
            except ValueError:
                pass
        known = ", ".join(sorted(p.value for p in Permission))
        raise InvalidScopeError(f"Unknown permission {raw!r}; use any of: {known} (or a family such as job.*).")
    return frozenset(found)


def sorted_names(permissions: Iterable[Permission]) -> list[str]:
    """Return permission names in a stable order, for replies and storage."""
    return sorted(p.value for p in permissions)
