"""Health: public, for load balancers and `cloudtuner` clients checking the server is up."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from cloudtuner import __version__
from cloudtuner.api.deps import Context

router = APIRouter(tags=["health"])


class HealthResponse(BaseModel):
    """The server is up."""

    status: str = "ok"
    version: str
    database: str
    providers: list[str]


@router.get("/api/health", response_model=HealthResponse, summary="Is the server up")
async def health(ctx: Context) -> HealthResponse:
    """Answers without touching the database, so it stays fast under load."""
    return HealthResponse(version=__version__, database=ctx.db.dialect.name, providers=ctx.providers.names)
