"""Request dependencies: the service context and the caller, with the permission each route needs.

Every route declares its permission with ``Depends(requires(Permission.X))`` (or is listed as
public in ``PUBLIC_ROUTES``); the route-inventory test holds every route to that.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from cloudtuner.api.auth_request import authenticate_request
from cloudtuner.core.errors import PermissionDeniedError
from cloudtuner.core.permissions import Permission, Principal
from cloudtuner.scheduler.loops import Scheduler
from cloudtuner.services.access import Authentication
from cloudtuner.services.context import ServiceContext

PUBLIC_ROUTES: frozenset[str] = frozenset(
    {
        "/api/health",
        "/docs",
        "/openapi.json",
        "/docs/oauth2-redirect",
        "/redoc",
        "/",
        "/assets/{name:path}",
        "/api/webhooks/{provider}",
        "/api/cloud/storage",
        "/api/cloud/storage/{path:path}",
        "/api/auth/login",
        "/api/auth/setup",  # the first admin, with the one-time setup token from the log
    }
)
"""Paths anyone may reach without signing in (webhooks and S3 requests authenticate by their signature)."""

WORKER_ROUTES: frozenset[str] = frozenset(
    {
        "/api/worker/register",
        "/api/worker/claim",
        "/api/worker/jobs/{job_id}/heartbeat",
        "/api/worker/jobs/{job_id}/logs",
        "/api/worker/jobs/{job_id}/result",
        "/api/worker/jobs/{job_id}/datasets",
    }
)
"""Paths of the worker protocol: authenticated by a worker's token (``services.workers``), never by a user."""


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
    """Return who is calling (see ``services.auth.authenticate``).

    In single-user mode (no users, loopback only) every caller is the local principal, which
    holds every permission. Otherwise a session or an API key is required; an API key's
    principal holds only its scopes that its owner still holds.

    Raises:
        AuthenticationRequiredError: multi-user mode and no valid credentials (401).
        CsrfTokenError: a change made with the session cookie but without its X-CSRF-Token (403).
    """
    return (await authenticate_request(request)).principal


async def current_authentication(request: Request) -> Authentication:
    """Return how the caller signed in (after a ``requires`` check, this costs nothing)."""
    return await authenticate_request(request)


CurrentAuth = Annotated[Authentication, Depends(current_authentication)]


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


class signed_in(requires):  # noqa: N801 - reads as a phrase at the route: Depends(signed_in())
    """Dependency for routes about the caller's own sign-in (who am I, log out): any signed-in
    caller may use them, whatever their permissions."""

    def __init__(self) -> None:
        self.permissions = ()

    async def __call__(self, request: Request) -> Principal:
        return await resolve_principal(request)
