"""What crosses the wire for the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class AuditEntry(BaseModel):
    """One recorded change: who, when, what, from where, and how it ended."""

    seq: int = Field(description="Position in the chain; contiguous.")
    at: datetime = Field(description="When it was recorded (UTC).")
    actor_id: str = Field(description="The user id (or `local`, `cli`, `system`, `anonymous`).")
    actor_name: str = Field(description="The username, or who else acted.")
    via: str = Field(description="How the actor was signed in: session, api_key, local, cli, system, none.")
    action: str = Field(description="What was done, e.g. submit_job, login, create_api_key.")
    target: str = Field(description="The path (or thing) acted on.")
    source_ip: str | None = Field(default=None, description="The client's address.")
    outcome: str = Field(description="success, denied, failed or error.")
    status: int | None = Field(default=None, description="The HTTP status of the reply, if any.")
    detail: dict[str, Any] | None = Field(default=None, description="More about it (ids, error code); never secrets.")
    prev_hash: str = Field(description="The hash of the entry before.")
    hash: str = Field(description="sha256 of prev_hash and this entry's fields.")


class AuditListResponse(BaseModel):
    """Audit entries, newest first."""

    entries: list[AuditEntry]
    next_before: int | None = Field(default=None, description="Pass as `before` for the next (older) page.")


class AuditVerifyResponse(BaseModel):
    """Whether the audit chain is intact from its anchor to its head."""

    valid: bool
    checked: int = Field(description="How many entries were recomputed.")
    first_seq: int | None = Field(default=None, description="The oldest entry kept.")
    anchor_seq: int = Field(default=0, description="The last entry removed by retention (0: none).")
    head_seq: int = Field(default=0, description="The newest entry.")
    head_hash: str | None = Field(
        default=None, description="The newest entry's hash; keep it elsewhere to detect a rewrite of the whole chain."
    )
    broken_at: int | None = Field(default=None, description="The first entry that does not verify.")
    problem: str | None = Field(default=None, description="What is wrong, when not valid.")
