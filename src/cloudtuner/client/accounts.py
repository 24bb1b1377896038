"""Typed calls for sign-in, API keys, users and the audit log, over a :class:`CloudtunerClient`."""

from __future__ import annotations

from typing import Any

from cloudtuner.client.http import CloudtunerClient
from cloudtuner.schemas.audit import AuditListResponse, AuditVerifyResponse
from cloudtuner.schemas.auth import (
    ApiKeyCreatedResponse,
    ApiKeyListResponse,
    LoginResponse,
    RevokeApiKeyResponse,
    UserListResponse,
    UserResponse,
    WhoAmIResponse,
)


def login(client: CloudtunerClient, username: str, password: str) -> LoginResponse:
    """Sign in; the reply holds the session token."""
    reply = client.request("POST", "/api/auth/login", json={"username": username, "password": password})
    return LoginResponse.model_validate(reply)


def logout(client: CloudtunerClient) -> None:
    """End the session the client is signed in with."""
    client.request("POST", "/api/auth/logout")


def who_am_i(client: CloudtunerClient) -> WhoAmIResponse:
    """Return who the server takes the client for."""
    return WhoAmIResponse.model_validate(client.request("GET", "/api/auth/me"))


def create_api_key(
    client: CloudtunerClient, name: str, scopes: list[str], expires_days: float | None
) -> ApiKeyCreatedResponse:
    """Create an API key; the reply holds the whole key, once."""
    body: dict[str, Any] = {"name": name, "scoped_permissions": scopes, "expires_days": expires_days}
    return ApiKeyCreatedResponse.model_validate(client.request("POST", "/api/cloud/auth/api-keys", json=body))


def list_api_keys(client: CloudtunerClient, *, all_users: bool = False) -> ApiKeyListResponse:
    """Return the caller's API keys (everyone's with ``all_users``)."""
    params = {"all": "true"} if all_users else {}
    return ApiKeyListResponse.model_validate(client.request("GET", "/api/cloud/auth/api-keys", params=params))


def revoke_api_key(client: CloudtunerClient, key_id: str) -> RevokeApiKeyResponse:
    """Revoke an API key."""
    return RevokeApiKeyResponse.model_validate(client.request("DELETE", f"/api/cloud/auth/api-keys/{key_id}"))


def list_users(client: CloudtunerClient) -> UserListResponse:
    """Return every user."""
    return UserListResponse.model_validate(client.request("GET", "/api/users"))


def create_user(
    client: CloudtunerClient, username: str, password: str, role: str, team: str | None = None
) -> UserResponse:
    """Create a user (in ``team``, if given)."""
    body = {"username": username, "password": password, "role": role, "team": team}
    return UserResponse.model_validate(client.request("POST", "/api/users", json=body))


def update_user(client: CloudtunerClient, username: str, changes: dict[str, Any]) -> UserResponse:
    """Change a user (role, team, active, password, unlock)."""
    return UserResponse.model_validate(client.request("PATCH", f"/api/users/{username}", json=changes))


def delete_user(client: CloudtunerClient, username: str) -> None:
    """Delete a user."""
    client.request("DELETE", f"/api/users/{username}")


def list_audit(
    client: CloudtunerClient,
    *,
    limit: int = 50,
    actor: str | None = None,
    action: str | None = None,
    before: int | None = None,
) -> AuditListResponse:
    """Return audit entries, newest first."""
    params: dict[str, Any] = {"limit": limit}
    for name, value in (("actor", actor), ("action", action), ("before", before)):
        if value is not None:
            params[name] = value
    return AuditListResponse.model_validate(client.request("GET", "/api/audit", params=params))


def verify_audit(client: CloudtunerClient) -> AuditVerifyResponse:
    """Ask the server to check the audit chain."""
    return AuditVerifyResponse.model_validate(client.request("GET", "/api/audit/verify"))
