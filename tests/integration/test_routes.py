"""The route table: every route declares its permission, and the OpenAPI document is complete."""

from __future__ import annotations

from typing import Any

from fastapi.routing import APIRoute

from cloudtuner.api.deps import PUBLIC_ROUTES, WORKER_ROUTES, requires
from tests.integration.conftest import RunningApp

SEED_ENDPOINTS = {
    ("GET", "/api/cloud/jobs"),
    ("POST", "/api/cloud/jobs/submit"),
    ("POST", "/api/cloud/jobs/sync"),
    ("GET", "/api/cloud/jobs/{job_id}"),
    ("GET", "/api/cloud/jobs/{job_id}/logs"),
    ("POST", "/api/cloud/jobs/{job_id}/cancel"),
    ("DELETE", "/api/cloud/jobs/{job_id}"),
}


def api_routes(app: Any) -> list[APIRoute]:
    """Every APIRoute, including those of included routers."""
    found: list[APIRoute] = []
    schema_paths = app.openapi()["paths"]
    for path, operations in schema_paths.items():
        for method in operations:
            found.append((method.upper(), path))  # type: ignore[arg-type]
    return found  # type: ignore[return-value]


def dependency_calls(route: APIRoute) -> list[Any]:
    calls = []
    stack = list(route.dependant.dependencies)
    while stack:
        dependant = stack.pop()
        calls.append(dependant.call)
        stack.extend(dependant.dependencies)
    return calls


def all_routes(app: Any) -> list[APIRoute]:
    routes: list[APIRoute] = []
    stack = list(app.router.routes)
    while stack:
        route = stack.pop()
        if isinstance(route, APIRoute):
            routes.append(route)
        for attribute in ("original_router", "router"):
            inner = getattr(route, attribute, None)
            if inner is not None and hasattr(inner, "routes"):
                stack.extend(inner.routes)
    return routes


async def test_seed_endpoints_exist(running: RunningApp) -> None:
    assert set(api_routes(running.app)) >= SEED_ENDPOINTS  # type: ignore[arg-type]


async def test_every_route_declares_a_permission(running: RunningApp) -> None:
    routes = all_routes(running.app)
    assert {route.path for route in routes} >= {path for _method, path in SEED_ENDPOINTS}
    for route in routes:
        if route.path in PUBLIC_ROUTES | WORKER_ROUTES:
            continue
        guards = [call for call in dependency_calls(route) if isinstance(call, requires)]
        assert guards, f"{route.methods} {route.path} declares no permission"


async def test_openapi_documents_every_operation(running: RunningApp) -> None:
    schema = running.app.openapi()
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            assert operation.get("summary"), f"{method} {path} has no summary"
            assert operation.get("description"), f"{method} {path} has no description"
            assert (
                "200" in operation["responses"] or "201" in operation["responses"] or "202" in operation["responses"]
            ), f"{method} {path}"
    for name, component in schema["components"]["schemas"].items():
        if name.startswith(("HTTPValidationError", "ValidationError")):
            continue
        assert component.get("description"), f"schema {name} has no description"


# --- deny by default (multi-user mode) ----------------------------------------------------------


def concrete_path(path: str) -> str:
    """Return a route path with each {parameter} filled in."""
    import re

    return re.sub(r"\{[^}]+\}", "x", path)


def guarded_routes(app: Any) -> list[tuple[str, APIRoute]]:
    """Every (method, route) outside PUBLIC_ROUTES."""
    return [
        (method, route)
        for route in all_routes(app)
        if route.path not in PUBLIC_ROUTES | WORKER_ROUTES
        for method in sorted(route.methods or ())
        if method != "HEAD"
    ]


async def test_multi_user_mode_refuses_anonymous_callers_everywhere(running: RunningApp) -> None:
    from cloudtuner.services import users

    await users.create_user(running.ctx, "admin", "correct horse battery staple", "admin")
    checked = 0
    for method, route in guarded_routes(running.app):
        reply = await running.client.request(method, concrete_path(route.path))
        assert reply.status_code == 401, f"{method} {route.path} answered {reply.status_code} to an anonymous caller"
        assert reply.json()["code"] == "authentication_required", f"{method} {route.path}: {reply.text}"
        checked += 1
    assert checked >= 30
    # The public list is short and each entry is there for a reason.
    assert "/api/auth/login" in PUBLIC_ROUTES
    assert "/api/auth/setup" in PUBLIC_ROUTES  # the first admin, with the one-time setup token from the log
    assert not [path for path in PUBLIC_ROUTES if path.startswith(("/api/cloud/jobs", "/api/users", "/api/audit"))]
    # The worker protocol answers 401 to anyone without a worker token.
    for path in sorted(WORKER_ROUTES):
        route = next(r for r in all_routes(running.app) if r.path == path)
        for method in sorted(route.methods or ()):
            reply = await running.client.request(method, concrete_path(path), json={})
            assert reply.status_code == 401, f"{method} {path} answered {reply.status_code} without a worker token"


async def test_each_permissions_routes_refuse_keys_that_lack_it(running: RunningApp) -> None:
    from cloudtuner.core.permissions import ALL_PERMISSIONS, Principal
    from cloudtuner.schemas.auth import CreateApiKeyRequest
    from cloudtuner.services import api_keys, users

    admin = await users.create_user(running.ctx, "admin", "correct horse battery staple", "admin")
    owner = Principal(id=admin.id, name=admin.username, permissions=ALL_PERMISSIONS)
    keys: dict[frozenset[Any], str] = {}
    checked = 0
    for method, route in guarded_routes(running.app):
        guard = next(call for call in dependency_calls(route) if isinstance(call, requires))
        if not guard.permissions:
            continue  # signed_in(): any signed-in caller (who am I, log out)
        lacking = frozenset(ALL_PERMISSIONS - set(guard.permissions))
        if lacking not in keys:
            request = CreateApiKeyRequest(name="lacking", scoped_permissions=sorted(p.value for p in lacking))
            keys[lacking] = (await api_keys.create_api_key(running.ctx, owner, request)).key
        reply = await running.client.request(
            method, concrete_path(route.path), headers={"Authorization": f"Bearer {keys[lacking]}"}
        )
        needed = " or ".join(p.value for p in guard.permissions)
        assert reply.status_code == 403, f"{method} {route.path} let in a key without {needed}: {reply.status_code}"
        assert reply.json()["code"] == "permission_denied", reply.text
        checked += 1
    assert checked >= 30
