"""Access keys of the built-in S3 endpoint (long-lived admin keys and per-job keys).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from cloudtuner.db.types import UTCDateTime

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "storage_credentials",
        sa.Column("access_key_id", sa.String(32), nullable=False),
        sa.Column("secret_ciphertext", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("name", sa.String(255), nullable=True),
        sa.Column("job_id", sa.String(26), nullable=True),
        sa.Column("bucket", sa.String(63), nullable=True),
        sa.Column("prefix", sa.String(1024), nullable=True),
        sa.Column("created_by", sa.String(64), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
        sa.Column("grace_seconds", sa.Float(), nullable=True),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_storage_credentials_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("access_key_id", name=op.f("pk_storage_credentials")),
    )
    op.create_index("ix_storage_credentials_job_id", "storage_credentials", ["job_id"])
    op.create_index("ix_storage_credentials_created_at", "storage_credentials", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_storage_credentials_created_at", "storage_credentials")
    op.drop_index("ix_storage_credentials_job_id", "storage_credentials")
    op.drop_table("storage_credentials")
