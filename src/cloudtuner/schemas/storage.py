"""What crosses the wire for the built-in S3 endpoint's credentials.

A credential's secret appears in one reply only: the one that creates it
(:class:`StorageCredentialCreatedResponse`). Listings and revocations never carry it.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator


class StorageCredentialKind(StrEnum):
    """Who a storage credential was made for."""

    ADMIN = "admin"
    """Created through the API or the CLI; lives until revoked or until its expiry, if any."""
    JOB = "job"
    """Issued to one job when it starts; limited to ``jobs/<job id>/``; ends a grace period after the job."""


class StorageCredentialStatus(StrEnum):
    """Whether a storage credential can sign requests right now."""

    ACTIVE = "active"
    EXPIRED = "expired"
    REVOKED = "revoked"


class CreateStorageCredentialRequest(BaseModel):
    """A long-lived access key to create; leave out bucket and prefix for a key that may use everything."""

    model_config = ConfigDict(extra="forbid")

    bucket: str | None = Field(
        default=None, max_length=63, description="The only bucket the key may use (S3 bucket name rules)."
    )
    prefix: str | None = Field(
        default=None,
        max_length=1000,
        description="The key prefix the key is limited to, e.g. 'models/flux/' (end it with '/' to keep "
        "'models/flux2/' out). Without a bucket it applies in every bucket.",
    )
    name: str | None = Field(default=None, max_length=255, description="A note to recognise the key by in the list.")
    expires_days: float | None = Field(
        default=None, gt=0, le=3650, description="Days until the key stops working; none: until revoked."
    )

    @field_validator("bucket", "prefix", "name")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        return value.strip()


class StorageCredential(BaseModel):
    """A storage credential as listed: its access key id, scope and lifetime, never its secret."""

    access_key_id: str = Field(description="The access key id (aws_access_key_id).")
    kind: StorageCredentialKind
    status: StorageCredentialStatus
    name: str | None = Field(default=None, description="The note given at creation.")
    job_id: str | None = Field(default=None, description="The job the key was issued to (kind job).")
    bucket: str | None = Field(default=None, description="The only bucket the key may use; none: any bucket.")
    prefix: str | None = Field(default=None, description="The key prefix the key is limited to; none: any key.")
    created_by: str | None = Field(default=None, description="Who created the key.")
    created_at: datetime
    expires_at: datetime | None = Field(
        default=None,
        description="When the key stops working; none: not before it is revoked (or, for a job's key, "
        "until the job ends plus the grace period).",
    )
    revoked_at: datetime | None = None


class StorageCredentialCreatedResponse(StorageCredential):
    """A new storage credential with its secret: shown this once, never again."""

    success: bool = True
    secret_access_key: str = Field(description="The secret access key (aws_secret_access_key). Shown only here.")
    endpoint_url: str = Field(
        description="The S3 endpoint URL to give clients (boto3 endpoint_url, aws --endpoint-url)."
    )
    region: str = Field(default="us-east-1", description="The region to sign for (any region is accepted).")


class StorageCredentialListResponse(BaseModel):
    """Storage credentials, newest first; never their secrets."""

    credentials: list[StorageCredential]


class RevokeStorageCredentialResponse(BaseModel):
    """The credential revoked; requests signed with it are refused from now on."""

    success: bool = True
    credential: StorageCredential
