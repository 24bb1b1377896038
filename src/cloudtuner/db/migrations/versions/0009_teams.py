"""Teams: a user's optional team, and the team a job was submitted under.

- ``users.team``: set by admins; None is no team.
- ``jobs.team``: the submitter's team at submission, so moving a user to another team later does
  not move their jobs; the queue's per-team limit counts busy jobs by it.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLES = ("users", "jobs")


def upgrade() -> None:
    for table in _TABLES:
        op.add_column(table, sa.Column("team", sa.String(64), nullable=True))


def downgrade() -> None:
    # SQLite (3.35+) drops a column natively when no index or constraint uses it.
    for table in reversed(_TABLES):
        op.drop_column(table, "team")
