"""The route table: every route declares its permission, and the OpenAPI document is complete."""

from __future__ import annotations

from typing import Any

from fastapi.routing import APIRoute

from cloudtuner.api.deps import PUBLIC_ROUTES, requires
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
        if route.path in PUBLIC_ROUTES:
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
