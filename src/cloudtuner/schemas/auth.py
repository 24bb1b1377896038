"""What crosses the wire for users, sessions and API keys.

Secrets travel one way only: a password in a request, a session token in the sign-in reply, a
whole API key in the reply that creates it. No other reply carries one.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator


class AccessMode(StrEnum):
    """How the server lets people in."""

    SINGLE_USER = "single_user"
    """No users, loopback only: every local caller is the admin."""
    MULTI_USER = "multi_user"
    """Users exist: every route but the public ones needs a session or an API key."""


class LoginRequest(BaseModel):
    """A sign-in with username and password."""

    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=64)
    password: SecretStr = Field(min_length=1, max_length=1024)


class SetupRequest(BaseModel):
    """The first admin, created with the one-time setup token printed in the server's log."""

    model_config = ConfigDict(extra="forbid")

    setup_token: SecretStr = Field(min_length=1, max_length=256, description="`setup_...`, from the server's log.")
    username: str = Field(min_length=1, max_length=64)
    password: SecretStr = Field(min_length=1, max_length=1024, description="At least 8 characters.")


class UserInfo(BaseModel):
    """A user as others see them: never their password."""

    id: str
    username: str
    role: str = Field(description="viewer, researcher, lead or admin.")
    team: str | None = Field(default=None, description="The user's team (per-team queue limits); None: no team.")
    permissions: list[str] = Field(description="What the role allows.")
    active: bool = Field(description="False: the user cannot sign in and their keys do not work.")
    locked: bool = Field(default=False, description="True while sign-in is locked after failed attempts.")
    created_at: datetime
    last_login_at: datetime | None = None


class LoginResponse(BaseModel):
    """A new session. The token works as `Authorization: Bearer <session_token>`; browsers get it as a cookie."""

    success: bool = True
    session_token: str = Field(description="Send as `Authorization: Bearer ...`. Shown only here.")
    csrf_token: str = Field(description="Send as `X-CSRF-Token` with changes made using the session cookie.")
    expires_at: datetime
    user: UserInfo


class ApiKeyStatus(StrEnum):
    """Whether an API key works right now."""

    ACTIVE = "active"
    EXPIRED = "expired"
    REVOKED = "revoked"


class ApiKeyInfo(BaseModel):
    """An API key as listed: never the key itself, only its first characters."""

    id: str
    name: str
    prefix: str = Field(description="The key's first characters, to recognise it.")
    owner: str = Field(description="The username of the key's owner.")
    scoped_permissions: list[str] = Field(description="What the key may do (never more than its owner may).")
    status: ApiKeyStatus
    created_at: datetime
    expires_at: datetime | None = None
    last_used_at: datetime | None = Field(default=None, description="Last use, to the minute.")
    revoked_at: datetime | None = None


class ApiKeyCreatedResponse(ApiKeyInfo):
    """A new API key with the whole key: shown this once, never again."""

    success: bool = True
    key: str = Field(description="The whole key (stk_...): send it as `Authorization: Bearer stk_...`.")
    dropped_permissions: list[str] = Field(
        default_factory=list, description="Asked for, but not granted: the owner does not hold them."
    )


class CreateApiKeyRequest(BaseModel):
    """An API key to create for yourself."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=255, description="What the key is for, e.g. ci-pipeline.")
    expires_days: float | None = Field(
        default=None, gt=0, le=3650, description="Days until the key stops working; none: until revoked."
    )
    scoped_permissions: list[str] = Field(
        min_length=1,
        description='What the key may do, e.g. ["job.submit", "job.view.own"]; families such as "job.*" work too.',
    )

    @field_validator("name")
    @classmethod
    def _strip(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("a name is required")
        return value


class ApiKeyListResponse(BaseModel):
    """API keys, newest first."""

    api_keys: list[ApiKeyInfo]


class RevokeApiKeyResponse(BaseModel):
    """The key, now revoked: requests that send it are refused from now on."""

    success: bool = True
    api_key: ApiKeyInfo


class ApiKeyRef(BaseModel):
    """The API key a request was made with."""

    id: str
    name: str
    prefix: str


class WhoAmIResponse(BaseModel):
    """Who the server takes the caller for, and what they may do."""

    mode: AccessMode
    via: str = Field(description="local (single-user mode), session or api_key.")
    user: UserInfo | None = Field(default=None, description="None in single-user mode.")
    permissions: list[str] = Field(description="What this request may do (a key's scopes, or the role's).")
    api_key: ApiKeyRef | None = None


class SessionInfo(BaseModel):
    """A signed-in session of yours."""

    id: str
    created_at: datetime
    expires_at: datetime
    last_seen_at: datetime
    source_ip: str | None = None
    user_agent: str | None = None
    current: bool = Field(description="True for the session this request was made with.")


class SessionListResponse(BaseModel):
    """Your sessions that still work, newest first."""

    sessions: list[SessionInfo]


class ChangePasswordRequest(BaseModel):
    """A new password for yourself; your other sessions are signed out."""

    model_config = ConfigDict(extra="forbid")

    current_password: SecretStr = Field(min_length=1, max_length=1024)
    new_password: SecretStr = Field(min_length=1, max_length=1024)


class CreateUserRequest(BaseModel):
    """A user to create."""

    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=64)
    password: SecretStr = Field(min_length=1, max_length=1024)
    role: str = Field(default="researcher", description="viewer, researcher, lead or admin.")
    team: str | None = Field(
        default=None, max_length=64, description="A team name (letters, digits, . _ -); none: no team."
    )


class UpdateUserRequest(BaseModel):
    """Changes to a user; fields left out keep their value."""

    model_config = ConfigDict(extra="forbid")

    role: str | None = Field(default=None, description="viewer, researcher, lead or admin.")
    active: bool | None = Field(default=None, description="False signs the user out and stops their keys.")
    password: SecretStr | None = Field(default=None, max_length=1024, description="A new password; signs them out.")
    unlock: bool = Field(default=False, description="Lift a lockout after failed sign-ins.")
    team: str | None = Field(
        default=None,
        max_length=64,
        description='A new team; null or "" removes the user from their team. Jobs keep the team they were '
        "submitted under.",
    )


class UserResponse(BaseModel):
    """One user."""

    success: bool = True
    user: UserInfo


class SetupResponse(BaseModel):
    """The first admin, created: the server is in multi-user mode now; sign in as them."""

    success: bool = True
    user: UserInfo
    detail: str = Field(description="What happened and what to do next.")


class UserListResponse(BaseModel):
    """Every user, by name."""

    users: list[UserInfo]
