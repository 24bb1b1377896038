"""User management: /api/users (user.manage)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, status

from cloudtuner.api.deps import Context, requires
from cloudtuner.core.permissions import Permission, Principal
from cloudtuner.schemas.auth import CreateUserRequest, UpdateUserRequest, UserListResponse, UserResponse
from cloudtuner.schemas.common import ErrorResponse, SuccessResponse
from cloudtuner.services import users

router = APIRouter(prefix="/api/users", tags=["users"])

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Invalid username, role, team or password."},
    404: {"model": ErrorResponse, "description": "No such user."},
    409: {"model": ErrorResponse, "description": "The name is taken, or this would remove the last admin."},
    422: {"model": ErrorResponse, "description": "A field is missing or has the wrong type."},
}
ManageUsers = Annotated[Principal, Depends(requires(Permission.USER_MANAGE))]


@router.get("", response_model=UserListResponse, summary="List users")
async def list_users(ctx: Context, _principal: ManageUsers) -> UserListResponse:
    """Every user, by name, with role, permissions and whether they are active or locked."""
    return UserListResponse(users=await users.list_users(ctx))


@router.post(
    "", response_model=UserResponse, status_code=status.HTTP_201_CREATED, responses=ERRORS, summary="Create a user"
)
async def create_user(body: CreateUserRequest, ctx: Context, _principal: ManageUsers) -> UserResponse:
    """Create a user with a password (at least 8 characters), a role: viewer, researcher
    (the default), lead or admin, and optionally a team (per-team queue limits)."""
    user = await users.create_user(ctx, body.username, body.password.get_secret_value(), body.role, body.team)
    return UserResponse(user=user)


@router.get("/{username}", response_model=UserResponse, responses=ERRORS, summary="Get a user")
async def get_user(username: str, ctx: Context, _principal: ManageUsers) -> UserResponse:
    """One user."""
    return UserResponse(user=await users.get_user(ctx, username))


@router.patch("/{username}", response_model=UserResponse, responses=ERRORS, summary="Change a user")
async def update_user(username: str, body: UpdateUserRequest, ctx: Context, _principal: ManageUsers) -> UserResponse:
    """Change the role or `team` (null or "" removes it), disable or enable (`active`), set a new
    password (signs them out), or `unlock` after failed sign-ins. The last active admin cannot be
    demoted or disabled."""
    return UserResponse(user=await users.update_user(ctx, username, body))


@router.delete("/{username}", response_model=SuccessResponse, responses=ERRORS, summary="Delete a user")
async def delete_user(username: str, ctx: Context, _principal: ManageUsers) -> SuccessResponse:
    """Delete a user with their sessions and API keys; their jobs stay. The last active admin
    cannot be deleted."""
    await users.delete_user(ctx, username)
    return SuccessResponse()
