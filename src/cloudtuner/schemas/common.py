"""Shapes shared by every part of the API."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ErrorResponse(BaseModel):
    """Every error reply: a sentence for people and a stable code for programs."""

    detail: str = Field(description="What went wrong and how to fix it, as a sentence.")
    code: str = Field(description="Stable snake_case identifier of the error.")
    errors: list[dict[str, Any]] | None = Field(
        default=None, description="For invalid requests: one entry per invalid field."
    )


class SuccessResponse(BaseModel):
    """A reply that only confirms that the request was carried out."""

    success: bool = True
