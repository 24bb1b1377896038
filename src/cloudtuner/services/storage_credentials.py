"""Access keys of the built-in S3 endpoint: long-lived admin keys and per-job keys.

Key contracts:

- A secret is stored encrypted with the server's key (``SecretBox``): SigV4 needs it in the clear
  to check a signature, so it cannot be only hashed. It is returned once, by the call that makes it.
- **Admin keys** (:func:`create_storage_credential`) may be limited to a bucket and a prefix and
  may expire; they work until revoked (:func:`revoke_storage_credential`).
- **Job keys** (:func:`issue_job_storage_credentials`, or :func:`add_job_storage_credentials`
  inside a ``JobUpdates`` change) are limited to the default bucket (``storage_default_bucket``)
  and the prefix ``jobs/<job id>/``, so a job can neither read nor write another job's files.
  They stop working ``storage_credentials_grace_seconds`` after the job ends: the grace period is
  recorded on each key, and :func:`find_s3_credential` counts it from ``jobs.finished_at`` (which
  ``transition_job`` stamps), so no call is needed when the job ends;
  :func:`expire_job_storage_credentials` stamps the same end on the rows for callers that want it
  explicit. Deleting a job deletes its keys (foreign key, ``ON DELETE CASCADE``).
- A revoked key is kept (``revoked_at``) and resolves to nothing: S3 clients then get
  ``InvalidAccessKeyId``. :func:`delete_stale_storage_credentials` removes old revoked and expired rows.

The job functions run inside the caller's transaction (they take its ``AsyncSession``), so
issuing and expiring keys commits or rolls back with the job's own change.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Select, delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from cloudtuner.core.errors import InvalidStorageScopeError, JobNotFoundError, StorageCredentialNotFoundError
from cloudtuner.core.permissions import Principal
from cloudtuner.db.batched_inserts import add_row
from cloudtuner.db.engine import Database
from cloudtuner.db.tables import JobRow, StorageCredentialRow
from cloudtuner.schemas.storage import (
    CreateStorageCredentialRequest,
    RevokeStorageCredentialResponse,
    StorageCredential,
    StorageCredentialCreatedResponse,
    StorageCredentialKind,
    StorageCredentialListResponse,
    StorageCredentialStatus,
)
from cloudtuner.services.context import ServiceContext
from cloudtuner.services.secrets import SecretBox
from cloudtuner.services.settings_documents import public_url
from cloudtuner.storage import DEFAULT_MOUNT_PATH, S3Credential, S3Error, new_access_key_id, new_secret_access_key
from cloudtuner.storage.keys import validate_bucket_name, validate_key

log = logging.getLogger(__name__)

ADMIN_KEY_PREFIX = "CTA"
"""Access key ids of admin keys start with this; job keys with :data:`JOB_KEY_PREFIX`."""
JOB_KEY_PREFIX = "CTJ"
MAX_LIST_LIMIT = 1000
_ACCESS_KEY_RE = re.compile(r"^[A-Z0-9]{16,32}$")


def job_prefix(job_id: str) -> str:
    """Return the key prefix a job's files live under in the default bucket: ``jobs/<job id>/``."""
    return f"jobs/{job_id}/"


def storage_endpoint_url(base_url: str) -> str:
    """Return the S3 endpoint URL of a server reachable at ``base_url`` (no path)."""
    return base_url.rstrip("/") + DEFAULT_MOUNT_PATH


@dataclass(frozen=True)
class JobStorageCredentials:
    """The access key a job writes its outputs with: what to hand the provider.

    ``bucket``/``prefix`` are where the job may write (``s3://<bucket>/<prefix>``); ``expires_at``
    is None while the job runs (the key then ends a grace period after the job).
    """

    access_key_id: str
    secret_access_key: str = field(repr=False)
    bucket: str
    prefix: str
    expires_at: datetime | None


# --- turning rows into credentials --------------------------------------------------------------


def effective_expiry(row: StorageCredentialRow, job_finished_at: datetime | None) -> datetime | None:
    """Return when ``row``'s key stops working: its own expiry, or its job's end plus the grace period."""
    expiry = row.expires_at
    if row.kind == StorageCredentialKind.JOB.value and job_finished_at is not None:
        ends = job_finished_at + timedelta(seconds=row.grace_seconds or 0.0)
        expiry = ends if expiry is None else min(expiry, ends)
    return expiry


def _view(row: StorageCredentialRow, job_finished_at: datetime | None, now: datetime) -> StorageCredential:
    expiry = effective_expiry(row, job_finished_at)
    if row.revoked_at is not None:
        status = StorageCredentialStatus.REVOKED
    elif expiry is not None and now >= expiry:
        status = StorageCredentialStatus.EXPIRED
    else:
        status = StorageCredentialStatus.ACTIVE
    return StorageCredential(
        access_key_id=row.access_key_id,
        kind=StorageCredentialKind(row.kind),
        status=status,
        name=row.name,
        job_id=row.job_id,
        bucket=row.bucket,
        prefix=row.prefix,
        created_by=row.created_by,
        created_at=row.created_at,
        expires_at=expiry,
        revoked_at=row.revoked_at,
    )


def _with_job_end() -> Select[StorageCredentialRow, datetime | None]:
    return select(StorageCredentialRow, JobRow.finished_at).outerjoin(JobRow, JobRow.id == StorageCredentialRow.job_id)


async def find_s3_credential(db: Database, box: SecretBox, access_key_id: str) -> S3Credential | None:
    """Return the S3 credential of ``access_key_id`` with its secret, or None if unknown or revoked.

    Expired keys are returned as they are, with their effective expiry: the S3 handler refuses
    them with ``ExpiredToken``.

    Raises:
        ConfigurationError: the secret cannot be decrypted (the server's key changed).
    """
    if not _ACCESS_KEY_RE.match(access_key_id):
        return None
    async with db.read() as session:
        found = (
            await session.execute(_with_job_end().where(StorageCredentialRow.access_key_id == access_key_id))
        ).first()
    if found is None:
        return None
    row, job_finished_at = found
    if row.revoked_at is not None:
        return None
    principal = f"job:{row.job_id}" if row.job_id else f"key:{row.name or row.access_key_id}"
    return S3Credential(
        access_key_id=row.access_key_id,
        secret_access_key=box.decrypt(row.secret_ciphertext),
        bucket=row.bucket,
        prefix=row.prefix,
        expires_at=effective_expiry(row, job_finished_at),
        principal=principal,
    )


# --- admin keys ---------------------------------------------------------------------------------


def check_scope(bucket: str | None, prefix: str | None) -> None:
    """Check that a key may be limited to ``bucket`` and ``prefix``.

    Raises:
        InvalidStorageScopeError: the bucket breaks S3's naming rules, or no valid object key
            could start with the prefix (a leading '/', '..' segments, control characters).
    """
    if bucket is not None:
        try:
            validate_bucket_name(bucket)
        except S3Error:
            raise InvalidStorageScopeError(
                f"{bucket!r} is not a valid bucket name: use 3 to 63 lower-case letters, digits, '.' and '-', "
                "starting and ending with a letter or digit."
            ) from None
    if prefix is not None:
        try:
            validate_key(prefix + "x")
        except S3Error:
            raise InvalidStorageScopeError(
                f"{prefix!r} is not a valid key prefix: use a relative path such as 'models/flux/', with no "
                "leading '/', no empty, '.' or '..' parts, and no backslashes or control characters."
            ) from None


async def create_storage_credential(
    ctx: ServiceContext, principal: Principal, request: CreateStorageCredentialRequest, *, request_base_url: str
) -> StorageCredentialCreatedResponse:
    """Create a long-lived access key; return it with its secret (the only time it is shown).

    The reply's ``endpoint_url`` is built from the public URL in use (Cloud settings, else
    ``CLOUDTUNER_PUBLIC_URL``), else from ``request_base_url``, the base URL the caller used.

    Raises:
        InvalidStorageScopeError: the bucket or prefix is not valid.
    """
    check_scope(request.bucket, request.prefix)
    now = ctx.clock.now()
    secret = new_secret_access_key()
    row = StorageCredentialRow(
        access_key_id=new_access_key_id(ADMIN_KEY_PREFIX),
        secret_ciphertext=ctx.secrets.box.encrypt(secret),
        kind=StorageCredentialKind.ADMIN.value,
        name=request.name,
        job_id=None,
        bucket=request.bucket,
        prefix=request.prefix,
        created_by=principal.id,
        created_at=now,
        expires_at=now + timedelta(days=request.expires_days) if request.expires_days is not None else None,
        grace_seconds=None,
        revoked_at=None,
    )
    async with ctx.db.transaction() as session:
        session.add(row)
    log.info("created storage key %s (%s)", row.access_key_id, row.name or "no name")
    base_url = await public_url(ctx) or request_base_url
    view = _view(row, None, now)
    return StorageCredentialCreatedResponse(
        **view.model_dump(), secret_access_key=secret, endpoint_url=storage_endpoint_url(base_url)
    )


async def list_storage_credentials(
    ctx: ServiceContext,
    *,
    kind: StorageCredentialKind | None = None,
    include_inactive: bool = False,
    limit: int = 200,
) -> StorageCredentialListResponse:
    """Return up to ``limit`` keys, newest first, without secrets.

    Revoked and expired keys are left out unless ``include_inactive``.
    """
    now = ctx.clock.now()
    query = _with_job_end()
    if kind is not None:
        query = query.where(StorageCredentialRow.kind == kind.value)
    if not include_inactive:
        query = query.where(
            StorageCredentialRow.revoked_at.is_(None),
            or_(StorageCredentialRow.expires_at.is_(None), StorageCredentialRow.expires_at > now),
        )
    query = query.order_by(StorageCredentialRow.created_at.desc(), StorageCredentialRow.access_key_id.desc())
    query = query.limit(max(1, min(limit, MAX_LIST_LIMIT)))
    async with ctx.db.read() as session:
        rows = (await session.execute(query)).all()
    views = [_view(row, finished_at, now) for row, finished_at in rows]
    if not include_inactive:
        views = [view for view in views if view.status is StorageCredentialStatus.ACTIVE]
    return StorageCredentialListResponse(credentials=views)


async def revoke_storage_credential(ctx: ServiceContext, access_key_id: str) -> RevokeStorageCredentialResponse:
    """Revoke a key (admin or job); revoking it again changes nothing.

    Every server process stops accepting it within ``storage_credentials_cache_seconds``.

    Raises:
        StorageCredentialNotFoundError: no key has that id.
    """
    now = ctx.clock.now()
    async with ctx.db.transaction() as session:
        found = (
            await session.execute(_with_job_end().where(StorageCredentialRow.access_key_id == access_key_id))
        ).first()
        if found is None:
            raise StorageCredentialNotFoundError(f"No storage credential has the access key id {access_key_id!r}.")
        row, job_finished_at = found
        if row.revoked_at is None:
            row.revoked_at = now
            log.info("revoked storage key %s", access_key_id)
        view = _view(row, job_finished_at, now)
    return RevokeStorageCredentialResponse(credential=view)


STALE_KEY_RETENTION = timedelta(days=30)
"""How long housekeeping keeps revoked and expired keys (``storage credentials list --all``
shows them until then)."""


async def delete_stale_storage_credentials(ctx: ServiceContext, *, older_than: timedelta) -> int:
    """Delete keys revoked, or expired, more than ``older_than`` ago; return how many.

    For the housekeeping loop. A job key counts as expired from its job's end plus its grace
    period, whether or not its expiry was stamped.
    """
    cutoff = ctx.clock.now() - older_than
    async with ctx.db.transaction() as session:
        ended = await session.execute(
            select(StorageCredentialRow.access_key_id, StorageCredentialRow.grace_seconds, JobRow.finished_at)
            .join(JobRow, JobRow.id == StorageCredentialRow.job_id)
            .where(JobRow.finished_at < cutoff, StorageCredentialRow.expires_at.is_(None))
        )
        over = [
            key
            for key, grace, finished in ended
            if finished is not None and finished + timedelta(seconds=grace or 0.0) < cutoff
        ]
        result = await session.execute(
            delete(StorageCredentialRow).where(
                or_(
                    StorageCredentialRow.revoked_at < cutoff,
                    StorageCredentialRow.expires_at < cutoff,
                    StorageCredentialRow.access_key_id.in_(over),
                )
            )
        )
    return int(result.rowcount)  # type: ignore[attr-defined]


# --- job keys -----------------------------------------------------------------------------------


def add_job_storage_credentials(
    ctx: ServiceContext, session: AsyncSession, job: JobRow, *, now: datetime | None = None
) -> JobStorageCredentials:
    """Add a new access key for ``job`` to ``session`` and return it; awaits nothing.

    For a change run by ``JobUpdates.apply`` (which must not await): the row is written when the
    caller's transaction commits (``db.batched_inserts.add_row``). The key is limited to the
    default bucket and ``jobs/<job id>/`` and has no expiry while the job runs; it ends
    ``storage_credentials_grace_seconds`` after the job does (``jobs.finished_at``). On a job
    that already ended, it ends with the job's keys.
    Each call makes a new key: keys of earlier attempts keep working until the job ends.
    """
    now = now or ctx.clock.now()
    grace = ctx.settings.storage_credentials_grace_seconds
    secret = new_secret_access_key()
    access_key_id = new_access_key_id(JOB_KEY_PREFIX)
    bucket = ctx.settings.storage_default_bucket
    prefix = job_prefix(job.id)
    expires_at = job.finished_at + timedelta(seconds=grace) if job.finished_at is not None else None
    add_row(
        session,
        StorageCredentialRow,
        {
            "access_key_id": access_key_id,
            "secret_ciphertext": ctx.secrets.box.encrypt(secret),
            "kind": StorageCredentialKind.JOB.value,
            "name": None,
            "job_id": job.id,
            "bucket": bucket,
            "prefix": prefix,
            "created_by": None,
            "created_at": now,
            "expires_at": expires_at,
            "grace_seconds": grace,
            "revoked_at": None,
        },
    )
    return JobStorageCredentials(access_key_id, secret, bucket, prefix, expires_at)


async def issue_job_storage_credentials(
    ctx: ServiceContext, session: AsyncSession, job_id: str, *, now: datetime | None = None, reuse: bool = True
) -> JobStorageCredentials:
    """Return an access key limited to the job's prefix in the default bucket, inside the caller's transaction.

    With ``reuse`` (the default) a key already issued to the job that is neither revoked nor
    expired is returned again, so a start that is retried or recovered hands the provider the same
    key; otherwise a new one is made as by :func:`add_job_storage_credentials` and flushed (it is
    committed with the caller's transaction).

    Raises:
        JobNotFoundError: no job has that id.
    """
    job = await session.get(JobRow, job_id)
    if job is None:
        raise JobNotFoundError(f"No job has the id {job_id!r}.")
    now = now or ctx.clock.now()
    bucket = ctx.settings.storage_default_bucket
    prefix = job_prefix(job_id)
    if reuse:
        existing = await session.scalars(
            select(StorageCredentialRow)
            .where(
                StorageCredentialRow.job_id == job_id,
                StorageCredentialRow.kind == StorageCredentialKind.JOB.value,
                StorageCredentialRow.bucket == bucket,
                StorageCredentialRow.prefix == prefix,
                StorageCredentialRow.revoked_at.is_(None),
                or_(StorageCredentialRow.expires_at.is_(None), StorageCredentialRow.expires_at > now),
            )
            .order_by(StorageCredentialRow.created_at.desc())
            .limit(1)
        )
        row = existing.first()
        if row is not None:
            expiry = effective_expiry(row, job.finished_at)
            if expiry is None or expiry > now:
                secret = ctx.secrets.box.decrypt(row.secret_ciphertext)
                return JobStorageCredentials(row.access_key_id, secret, bucket, prefix, row.expires_at)
    issued = add_job_storage_credentials(ctx, session, job, now=now)
    await session.flush()
    return issued


async def expire_job_storage_credentials(session: AsyncSession, job_id: str, ended_at: datetime) -> int:
    """Make the job's keys end their grace period after ``ended_at``, inside the caller's transaction.

    Call it when the job reaches a final state. A key that already ends sooner keeps its expiry;
    revoked keys are left alone. Returns how many keys were changed.
    """
    rows = await session.scalars(
        select(StorageCredentialRow).where(
            StorageCredentialRow.job_id == job_id,
            StorageCredentialRow.kind == StorageCredentialKind.JOB.value,
            StorageCredentialRow.revoked_at.is_(None),
        )
    )
    changed = 0
    for row in rows:
        ends = ended_at + timedelta(seconds=row.grace_seconds or 0.0)
        if row.expires_at is None or ends < row.expires_at:
            row.expires_at = ends
            changed += 1
    return changed
