"""The tables of the job store. Row classes are storage, not the domain or the wire."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, Float, ForeignKey, Index, Integer, MetaData, String, Text, text
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
    # The submitter's team when the job was submitted (per-team limits count it); None: no team.
    team: Mapped[str | None] = mapped_column(String(64))

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

    # Cost (see docs/dev/costs.md): the price the job is charged at, the seconds billed so far,
    # whether the provider's final figure is in, the estimate at submission (reserved against
    # spending limits until the job ends), its own budget cap, and what estimates learn from.
    price_per_second: Mapped[float | None] = mapped_column(Float)
    run_seconds: Mapped[float | None] = mapped_column(Float)
    cost_final: Mapped[bool] = mapped_column(Boolean, default=False)
    cost_reserved_usd: Mapped[float] = mapped_column(Float, default=0.0)
    estimate_low_usd: Mapped[float | None] = mapped_column(Float)
    estimate_high_usd: Mapped[float | None] = mapped_column(Float)
    cost_estimate: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    budget_usd: Mapped[float | None] = mapped_column(Float)
    training_kind: Mapped[str | None] = mapped_column(String(64))
    work_units: Mapped[float | None] = mapped_column(Float)

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
        # Spend of a calendar period (spending limits, metrics): jobs by submission time.
        Index("ix_jobs_created_at", "created_at"),
        # What estimates learn from: completed jobs by kind of training and hardware, newest first.
        Index(
            "ix_jobs_training_kind_hardware_finished_at",
            "training_kind",
            "hardware",
            "finished_at",
            sqlite_where=text("status = 'completed'"),
            postgresql_where=text("status = 'completed'"),
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


class StorageCredentialRow(Base):
    """An access key of the built-in S3 endpoint: its encrypted secret, what it may touch, until when.

    ``kind`` is ``admin`` (created through the API, long-lived) or ``job`` (issued to one job,
    limited to its prefix, ending ``grace_seconds`` after the job does). The secret is encrypted
    with the server's key, since SigV4 needs it in the clear to check a signature. A revoked key
    keeps its row (``revoked_at``) until housekeeping deletes it.
    """

    __tablename__ = "storage_credentials"

    access_key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    secret_ciphertext: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str | None] = mapped_column(String(255))
    job_id: Mapped[str | None] = mapped_column(String(26), ForeignKey("jobs.id", ondelete="CASCADE"))
    bucket: Mapped[str | None] = mapped_column(String(63))
    prefix: Mapped[str | None] = mapped_column(String(1024))
    created_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    grace_seconds: Mapped[float | None] = mapped_column(Float)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_storage_credentials_job_id", "job_id"),
        Index("ix_storage_credentials_created_at", "created_at"),
    )


class UserRow(Base):
    """A person who signs in: a lower-case username, an argon2 password hash and a role."""

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    username: Mapped[str] = mapped_column(String(64))
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(32))
    team: Mapped[str | None] = mapped_column(String(64))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_users_username", "username", unique=True),)


class SessionRow(Base):
    """A signed-in session. Only the sha256 of its token is kept, looked up by a unique index."""

    __tablename__ = "user_sessions"

    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str] = mapped_column(String(26), ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    source_ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(255))

    __table_args__ = (
        Index("ix_user_sessions_token_hash", "token_hash", unique=True),
        Index("ix_user_sessions_user_id", "user_id"),
        Index("ix_user_sessions_expires_at", "expires_at"),
    )


class ApiKeyRow(Base):
    """An API key (``stk_...``): only its sha256 is kept, looked up by a unique index; its scopes."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    prefix: Mapped[str] = mapped_column(String(16))
    user_id: Mapped[str] = mapped_column(String(26), ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))
    scopes: Mapped[list[str]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_api_keys_key_hash", "key_hash", unique=True),
        Index("ix_api_keys_user_id", "user_id"),
    )


class LoginThrottleRow(Base):
    """Failed sign-ins counted per account (``user:<name>``) or address (``ip:<address>``)."""

    __tablename__ = "login_throttle"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    window_started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AuditEntryRow(Base):
    """One entry of the audit log. ``hash`` chains it to the entry before (see services.audit)."""

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(BigIntegerPK, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor_id: Mapped[str] = mapped_column(String(64))
    actor_name: Mapped[str] = mapped_column(String(255))
    via: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(128))
    target: Mapped[str] = mapped_column(String(1024))
    source_ip: Mapped[str | None] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))
    status: Mapped[int | None] = mapped_column(Integer)
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))

    __table_args__ = (Index("ix_audit_log_at", "at"),)


class AuditStateRow(Base):
    """The audit chain's one state row: its newest entry, and where it starts after retention."""

    __tablename__ = "audit_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    head_seq: Mapped[int] = mapped_column(BigInteger)
    head_hash: Mapped[str] = mapped_column(String(64))
    anchor_seq: Mapped[int] = mapped_column(BigInteger)
    anchor_hash: Mapped[str] = mapped_column(String(64))


class SpendingScopeRow(Base):
    """A spending scope (``global``, ``provider:<name>``): the row submissions lock while they check
    its limit and reserve their estimates, so that concurrent submissions cannot together exceed it."""

    __tablename__ = "spending_scopes"

    scope: Mapped[str] = mapped_column(String(128), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ArtifactRow(Base):
    """One file delivered for a job (weights, a checkpoint, a sample): where it is, its size and hash.

    ``destination`` is ``local`` (the built-in S3 endpoint), ``s3`` (an external S3 endpoint) or
    ``huggingface``; ``location`` says where the file is (``s3://bucket/key``, ``hf://repo/path``)
    and ``location_hash`` (sha256 of destination and location) makes it unique per job, so a file
    delivered again updates its row. ``sha256`` is None when the destination does not tell it.
    """

    __tablename__ = "artifacts"

    id: Mapped[int] = mapped_column(BigIntegerPK, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(String(26), ForeignKey("jobs.id", ondelete="CASCADE"))
    destination: Mapped[str] = mapped_column(String(16))
    location_hash: Mapped[str] = mapped_column(String(64))
    location: Mapped[str] = mapped_column(Text)
    path: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(16))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64))
    etag: Mapped[str | None] = mapped_column(String(255))
    content_type: Mapped[str | None] = mapped_column(String(255))
    delivered_at: Mapped[datetime] = mapped_column(UTCDateTime)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_artifacts_job_id_location_hash", "job_id", "location_hash", unique=True),)


class JobDeliveryRow(Base):
    """Where a job delivers its model, and whether what it delivered has been collected.

    Added when a job is first dispatched with somewhere to deliver to. Once the job ends, the
    delivery loop leases the row (``lease_token`` until ``lease_expires_at``), lists the
    destination, records what it finds as artifacts and, for the Hub, pushes the model card;
    ``state`` then becomes ``done`` (or ``failed`` after ``attempts`` tries, with ``error``).
    ``destination`` is ``local``, ``s3``, ``huggingface`` or ``auto`` (local download when the
    server had a public URL at dispatch).
    """

    __tablename__ = "job_deliveries"

    job_id: Mapped[str] = mapped_column(String(26), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    destination: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lease_token: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reported: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_job_deliveries_state_next_attempt_at", "state", "next_attempt_at"),)


class WorkerRow(Base):
    """A self-hosted worker: its hashed token, labels, the GPUs it reported and what it is doing.

    ``token_sha256`` is the only form of the token kept. ``state`` is what the worker last said
    (``connecting`` until it registers, ``idle``, ``busy``); ``draining`` takes no more jobs; a
    worker whose ``last_heartbeat_at`` is older than the worker lease is shown ``offline``.
    """

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(26), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    token_sha256: Mapped[str] = mapped_column(String(64))
    labels: Mapped[dict[str, Any]] = mapped_column(JSONType)
    gpus: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    hostname: Mapped[str | None] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(16))
    draining: Mapped[bool] = mapped_column(Boolean, default=False)
    persistent: Mapped[bool] = mapped_column(Boolean, default=False)
    current_job_id: Mapped[str | None] = mapped_column(String(26))
    created_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    registered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_workers_token_sha256", "token_sha256", unique=True),
        Index("ix_workers_name", "name", unique=True),
    )


class WorkerAssignmentRow(Base):
    """A job handed to a worker: the primary key on ``job_id`` makes the hand-over unique.

    The worker holds it while it heartbeats (``lease_token`` until ``lease_expires_at``); a lost
    lease requeues the job and deletes the row.
    """

    __tablename__ = "worker_assignments"

    job_id: Mapped[str] = mapped_column(String(26), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    worker_id: Mapped[str] = mapped_column(String(26))
    lease_token: Mapped[str] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_worker_assignments_lease_expires_at", "lease_expires_at"),
        Index("ix_worker_assignments_worker_id", "worker_id"),
    )
