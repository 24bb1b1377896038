"""Artifacts: the files delivered for each job, and each job's delivery.

- ``artifacts``: one row per delivered file (destination, location, path, kind, size, sha256,
  ETag, content type, times), unique per job and location.
- ``job_deliveries``: one row per job that delivers somewhere, with the state of collecting what
  it delivered once it ends (leased by the delivery loop).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from cloudtuner.db.types import BigIntegerPK, UTCDateTime

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "artifacts",
        sa.Column("id", BigIntegerPK, autoincrement=True, nullable=False),
        sa.Column("job_id", sa.String(26), nullable=False),
        sa.Column("destination", sa.String(16), nullable=False),
        sa.Column("location_hash", sa.String(64), nullable=False),
        sa.Column("location", sa.Text(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=True),
        sa.Column("etag", sa.String(255), nullable=True),
        sa.Column("content_type", sa.String(255), nullable=True),
        sa.Column("delivered_at", UTCDateTime(), nullable=False),
        sa.Column("recorded_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_artifacts_job_id_jobs"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_artifacts")),
    )
    op.create_index("ix_artifacts_job_id_location_hash", "artifacts", ["job_id", "location_hash"], unique=True)
    op.create_table(
        "job_deliveries",
        sa.Column("job_id", sa.String(26), nullable=False),
        sa.Column("destination", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=True),
        sa.Column("lease_token", sa.String(64), nullable=True),
        sa.Column("lease_expires_at", UTCDateTime(), nullable=True),
        sa.Column("reported", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_job_deliveries_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("job_id", name=op.f("pk_job_deliveries")),
    )
    op.create_index("ix_job_deliveries_state_next_attempt_at", "job_deliveries", ["state", "next_attempt_at"])


def downgrade() -> None:
    op.drop_index("ix_job_deliveries_state_next_attempt_at", "job_deliveries")
    op.drop_table("job_deliveries")
    op.drop_index("ix_artifacts_job_id_location_hash", "artifacts")
    op.drop_table("artifacts")
