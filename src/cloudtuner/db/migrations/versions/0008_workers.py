"""Workers: self-hosted machines that run jobs, and the jobs handed to them.

- ``workers``: one row per worker (sha256 of its token, labels, GPUs, state, heartbeat).
- ``worker_assignments``: one row per job a worker holds, with its lease.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from cloudtuner.db.types import JSONType, UTCDateTime

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "workers",
        sa.Column("id", sa.String(26), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("token_sha256", sa.String(64), nullable=False),
        sa.Column("labels", JSONType, nullable=False),
        sa.Column("gpus", JSONType, nullable=False),
        sa.Column("hostname", sa.String(255), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("draining", sa.Boolean(), nullable=False),
        sa.Column("persistent", sa.Boolean(), nullable=False),
        sa.Column("current_job_id", sa.String(26), nullable=True),
        sa.Column("created_by", sa.String(64), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("registered_at", UTCDateTime(), nullable=True),
        sa.Column("last_heartbeat_at", UTCDateTime(), nullable=True),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workers")),
    )
    op.create_index("ix_workers_token_sha256", "workers", ["token_sha256"], unique=True)
    op.create_index("ix_workers_name", "workers", ["name"], unique=True)
    op.create_table(
        "worker_assignments",
        sa.Column("job_id", sa.String(26), nullable=False),
        sa.Column("worker_id", sa.String(26), nullable=False),
        sa.Column("lease_token", sa.String(64), nullable=False),
        sa.Column("lease_expires_at", UTCDateTime(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_worker_assignments_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("job_id", name=op.f("pk_worker_assignments")),
    )
    op.create_index("ix_worker_assignments_lease_expires_at", "worker_assignments", ["lease_expires_at"])
    op.create_index("ix_worker_assignments_worker_id", "worker_assignments", ["worker_id"])


def downgrade() -> None:
    op.drop_index("ix_worker_assignments_worker_id", "worker_assignments")
    op.drop_index("ix_worker_assignments_lease_expires_at", "worker_assignments")
    op.drop_table("worker_assignments")
    op.drop_index("ix_workers_name", "workers")
    op.drop_index("ix_workers_token_sha256", "workers")
    op.drop_table("workers")
