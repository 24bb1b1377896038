"""Request dependencies: the service context and the caller, with the permission each route needs.

Every route declares its permission with ``Depends(requires(Permission.X))`` (or is listed as
public in ``PUBLIC_ROUTES``); the route-inventory test holds every route to that.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from cloudtuner.core.errors import AuthenticationRequiredError, PermissionDeniedError
from cloudtuner.core.permissions import LOCAL_PRINCIPAL, Permission, Principal
from cloudtuner.scheduler.loops import Scheduler
from cloudtuner.services.context import ServiceContext

PUBLIC_ROUTES: frozenset[str] = frozenset(
    {"/api/health", "/docs", "/openapi.json", "/docs/oauth2-redirect", "/redoc", "/", "/api/webhooks/{provider}"}
)
"""Paths anyone may reach without signing in (webhooks authenticate by their signature)."""


async def get_context(request: Request) -> ServiceContext:
    """Return the app's service context.

    (``async`` so that FastAPI calls it in the event loop: a plain function would be sent to
    the thread pool on every request.)
    """
    ctx: ServiceContext = request.app.state.ctx
    return ctx


async def get_scheduler(request: Request) -> Scheduler:
    """Return the app's scheduler (its lease owner name is this process's)."""
    scheduler: Scheduler = request.app.state.scheduler
    return scheduler


Context = Annotated[ServiceContext, Depends(get_context)]
SchedulerDep = Annotated[Scheduler, Depends(get_scheduler)]


async def resolve_principal(request: Request) -> Principal:
    """Return who is calling.

    In single-user mode (no users, loopback only) every caller is the local principal, which
    holds every permission.

    Raises:
        AuthenticationRequiredError: the server is not in single-user mode and the request
            carries no valid credentials.
    """
    ctx: ServiceContext = request.app.state.ctx
    if ctx.settings.binds_loopback_only:
        return LOCAL_PRINCIPAL
    raise AuthenticationRequiredError()


class requires:  # noqa: N801 - reads as a verb at the route: Depends(requires(...))
    """Dependency that returns the caller if they hold ``permission`` (or any of ``alternatives``)."""

    def __init__(self, permission: Permission, *alternatives: Permission) -> None:
        self.permissions = (permission, *alternatives)

    async def __call__(self, request: Request) -> Principal:
        principal = await resolve_principal(request)
        if not principal.can_any(*self.permissions):
            needed = " or ".join(p.value for p in self.permissions)
            raise PermissionDeniedError(f"This needs the {needed} permission, which you do not have.")
        return principal
