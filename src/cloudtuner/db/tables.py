"""The tables of the job store. Row classes are storage, not the domain or the wire."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, MetaData, String, Text, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from cloudtuner.db.types import BigIntegerPK, JSONType, UTCDateTime

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base of every table, with constraint names stable across databases."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class JobRow(Base):
    """One training job, wherever it runs."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    owner_id: Mapped[str] = mapped_column(String(64))
    provider: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(32))
    priority: Mapped[int] = mapped_column(Integer, default=0)

    config_name: Mapped[str | None] = mapped_column(String(255))
    config: Mapped[dict[str, Any]] = mapped_column(JSONType)
    dataloader_config: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    config_snapshot: Mapped[dict[str, Any]] = mapped_column(JSONType)
    tracker_run_name: Mapped[str | None] = mapped_column(String(255))
    hardware: Mapped[str | None] = mapped_column(String(64))
    publishing: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    upload_consent: Mapped[bool | None] = mapped_column(Boolean)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))

    provider_job_id: Mapped[str | None] = mapped_column(String(255))
    progress: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0)
    error: Mapped[str | None] = mapped_column(Text)
    log_length: Mapped[int] = mapped_column(Integer, default=0)
    upload_summary: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    package_sha256: Mapped[str | None] = mapped_column(String(64))

    dispatch_attempts: Mapped[int] = mapped_column(Integer, default=0)
    dispatch_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancel_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_token: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    next_sync_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_jobs_status_id", "status", "id"),
        Index("ix_jobs_provider_id", "provider", "id"),
        Index("ix_jobs_owner_id_id", "owner_id", "id"),
        # Queued jobs as the dispatcher takes them: highest priority, then oldest.
        Index("ix_jobs_status_priority_desc_id", "status", priority.desc(), "id"),
        Index("ix_jobs_provider_provider_job_id", "provider", "provider_job_id"),
        # Runs due for a sync, soonest first; only the rows that have a next sync time.
        Index(
            "ix_jobs_next_sync_at_id",
            "next_sync_at",
            "id",
            sqlite_where=text("next_sync_at IS NOT NULL"),
            postgresql_where=text("next_sync_at IS NOT NULL"),
        ),
    )


class JobEventRow(Base):
    """One change of a job's status: from, to, when and why."""

    __tablename__ = "job_events"

    id: Mapped[int] = mapped_column(BigIntegerPK, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(String(26), ForeignKey("jobs.id", ondelete="CASCADE"))
    from_status: Mapped[str | None] = mapped_column(String(32))
    to_status: Mapped[str] = mapped_column(String(32))
    cause: Mapped[str] = mapped_column(String(64))
    detail: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_job_events_job_id_id", "job_id", "id"),)


class JobLogRow(Base):
    """A chunk of a job's log; the log is the chunks in id order."""

    __tablename__ = "job_logs"

    id: Mapped[int] = mapped_column(BigIntegerPK, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(String(26), ForeignKey("jobs.id", ondelete="CASCADE"))
    start_offset: Mapped[int] = mapped_column(Integer)
    content: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_job_logs_job_id_start_offset", "job_id", "start_offset"),)


class SavedConfigRow(Base):
    """A named SimpleTuner config (config.json arguments) with its dataloader list."""

    __tablename__ = "saved_configs"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    config: Mapped[dict[str, Any]] = mapped_column(JSONType)
    dataloader_config: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    description: Mapped[str | None] = mapped_column(Text)
    latest_commit: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class IdempotencyKeyRow(Base):
    """A caller's idempotency key and the job it created, with a fingerprint of the request."""

    __tablename__ = "idempotency_keys"

    principal_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    job_id: Mapped[str] = mapped_column(String(26), ForeignKey("jobs.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_idempotency_keys_expires_at", "expires_at"),)


class SettingsDocumentRow(Base):
    """A settings document edited through the API: ``cloud`` or ``provider:<name>``."""

    __tablename__ = "settings_documents"

    scope: Mapped[str] = mapped_column(String(128), primary_key=True)
    document: Mapped[dict[str, Any]] = mapped_column(JSONType)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class SecretRow(Base):
    """A secret (a provider token, a storage key), encrypted with the server's key."""

    __tablename__ = "secrets"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    ciphertext: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class WebhookReceiptRow(Base):
    """A webhook delivery already accepted, by its ``webhook-id``: replays are ignored."""

    __tablename__ = "webhook_receipts"

    provider: Mapped[str] = mapped_column(String(64), primary_key=True)
    webhook_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    job_id: Mapped[str | None] = mapped_column(String(26))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_webhook_receipts_received_at", "received_at"),)
