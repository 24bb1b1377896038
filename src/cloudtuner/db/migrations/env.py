"""Alembic environment: runs on the connection that cloudtuner.db.migrate hands over."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from cloudtuner.db.tables import Base

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError("run migrations through cloudtuner.db.migrate, which supplies a connection")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
