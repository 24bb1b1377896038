"""Costs: per-job price, billed seconds, estimate, reservation and budget cap; spending scopes.

- ``jobs`` gains the cost columns (see ``db.tables.JobRow``), an index on ``created_at`` (the spend
  of a calendar period) and a partial index of completed jobs by kind of training and hardware
  (what estimates learn from).
- ``spending_scopes`` holds one row per spending scope, locked while a submission checks its limit.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from cloudtuner.db.types import JSONType, UTCDateTime

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COMPLETED = "status = 'completed'"
_COLUMNS = (
    ("price_per_second", sa.Float(), True, None),
    ("run_seconds", sa.Float(), True, None),
    ("cost_final", sa.Boolean(), False, sa.false()),
    ("cost_reserved_usd", sa.Float(), False, sa.text("0")),
    ("estimate_low_usd", sa.Float(), True, None),
    ("estimate_high_usd", sa.Float(), True, None),
    ("cost_estimate", JSONType, True, None),
    ("budget_usd", sa.Float(), True, None),
    ("training_kind", sa.String(64), True, None),
    ("work_units", sa.Float(), True, None),
)


def upgrade() -> None:
    for name, type_, nullable, default in _COLUMNS:
        op.add_column("jobs", sa.Column(name, type_, nullable=nullable, server_default=default))
    op.create_index("ix_jobs_created_at", "jobs", ["created_at"])
    op.create_index(
        "ix_jobs_training_kind_hardware_finished_at",
        "jobs",
        ["training_kind", "hardware", "finished_at"],
        sqlite_where=sa.text(_COMPLETED),
        postgresql_where=sa.text(_COMPLETED),
    )
    op.create_table(
        "spending_scopes",
        sa.Column("scope", sa.String(128), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("scope", name=op.f("pk_spending_scopes")),
    )


def downgrade() -> None:
    op.drop_table("spending_scopes")
    op.drop_index("ix_jobs_training_kind_hardware_finished_at", "jobs")
    op.drop_index("ix_jobs_created_at", "jobs")
    # SQLite (3.35+) drops a column natively when no index or constraint uses it.
    for name, _type, _nullable, _default in reversed(_COLUMNS):
        op.drop_column("jobs", name)
