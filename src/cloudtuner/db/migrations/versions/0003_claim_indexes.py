"""Indexes that serve the scheduler's claim queries.

- ``ix_jobs_next_sync_at_id``: jobs whose provider run is due for a sync, by time then id. Partial
  (only rows with a next sync time, a few among many finished jobs), on SQLite and PostgreSQL.
- ``ix_jobs_status_priority_desc_id`` replaces ``ix_jobs_status_priority_id``: queued jobs,
  highest priority then oldest first, read in that order with no sort however long the queue.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_HAS_NEXT_SYNC = "next_sync_at IS NOT NULL"


def upgrade() -> None:
    op.create_index(
        "ix_jobs_next_sync_at_id",
        "jobs",
        ["next_sync_at", "id"],
        sqlite_where=sa.text(_HAS_NEXT_SYNC),
        postgresql_where=sa.text(_HAS_NEXT_SYNC),
    )
    op.create_index("ix_jobs_status_priority_desc_id", "jobs", ["status", sa.text("priority DESC"), "id"])
    op.drop_index("ix_jobs_status_priority_id", "jobs")


def downgrade() -> None:
    op.create_index("ix_jobs_status_priority_id", "jobs", ["status", "priority", "id"])
    op.drop_index("ix_jobs_status_priority_desc_id", "jobs")
    op.drop_index("ix_jobs_next_sync_at_id", "jobs")
