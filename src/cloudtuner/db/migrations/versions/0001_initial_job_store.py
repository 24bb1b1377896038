"""Initial job store: jobs, their events and logs, saved configs, idempotency keys.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from cloudtuner.db.types import BigIntegerPK, JSONType, UTCDateTime

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(26), nullable=False),
        sa.Column("owner_id", sa.String(64), nullable=False),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("config_name", sa.String(255), nullable=True),
        sa.Column("config", JSONType, nullable=False),
        sa.Column("dataloader_config", JSONType, nullable=False),
        sa.Column("config_snapshot", JSONType, nullable=False),
        sa.Column("tracker_run_name", sa.String(255), nullable=True),
        sa.Column("hardware", sa.String(64), nullable=True),
        sa.Column("publishing", JSONType, nullable=True),
        sa.Column("upload_consent", sa.Boolean(), nullable=True),
        sa.Column("idempotency_key", sa.String(255), nullable=True),
        sa.Column("provider_job_id", sa.String(255), nullable=True),
        sa.Column("progress", JSONType, nullable=True),
        sa.Column("cost_usd", sa.Float(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("log_length", sa.Integer(), nullable=False),
        sa.Column("dispatch_attempts", sa.Integer(), nullable=False),
        sa.Column("dispatch_started_at", UTCDateTime(), nullable=True),
        sa.Column("cancel_requested_at", UTCDateTime(), nullable=True),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("lease_token", sa.String(64), nullable=True),
        sa.Column("lease_expires_at", UTCDateTime(), nullable=True),
        sa.Column("next_sync_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=True),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
    )
    op.create_index("ix_jobs_owner_id_id", "jobs", ["owner_id", "id"])
    op.create_index("ix_jobs_provider_id", "jobs", ["provider", "id"])
    op.create_index("ix_jobs_provider_provider_job_id", "jobs", ["provider", "provider_job_id"])
    op.create_index("ix_jobs_status_id", "jobs", ["status", "id"])
    op.create_index("ix_jobs_status_priority_id", "jobs", ["status", "priority", "id"])

    op.create_table(
        "saved_configs",
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("config", JSONType, nullable=False),
        sa.Column("dataloader_config", JSONType, nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("latest_commit", sa.String(64), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_saved_configs")),
    )

    op.create_table(
        "idempotency_keys",
        sa.Column("principal_id", sa.String(64), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("job_id", sa.String(26), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_idempotency_keys_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("principal_id", "key", name=op.f("pk_idempotency_keys")),
    )
    op.create_index("ix_idempotency_keys_expires_at", "idempotency_keys", ["expires_at"])

    op.create_table(
        "job_events",
        sa.Column("id", BigIntegerPK, autoincrement=True, nullable=False),
        sa.Column("job_id", sa.String(26), nullable=False),
        sa.Column("from_status", sa.String(32), nullable=True),
        sa.Column("to_status", sa.String(32), nullable=False),
        sa.Column("cause", sa.String(64), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_job_events_job_id_jobs"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_events")),
    )
    op.create_index("ix_job_events_job_id_id", "job_events", ["job_id", "id"])

    op.create_table(
        "job_logs",
        sa.Column("id", BigIntegerPK, autoincrement=True, nullable=False),
        sa.Column("job_id", sa.String(26), nullable=False),
        sa.Column("start_offset", sa.Integer(), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_job_logs_job_id_jobs"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_logs")),
    )
    op.create_index("ix_job_logs_job_id_start_offset", "job_logs", ["job_id", "start_offset"])


def downgrade() -> None:
    op.drop_table("job_logs")
    op.drop_table("job_events")
    op.drop_table("idempotency_keys")
    op.drop_table("saved_configs")
    op.drop_table("jobs")
