"""The one settings object.

Built by the entry points (``cloudtuner server``, the app factory, tests) and passed down
explicitly; no module reads the environment for itself. Names are fixed by SPEC.md: the prefix is
``CLOUDTUNER_``, except the provider tokens, which keep the names users already export.
"""

from __future__ import annotations

import functools
import ipaddress
from pathlib import Path
from typing import Annotated, Any

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_PORT = 8001


@functools.lru_cache(maxsize=64)
def _is_loopback_host(host: str) -> bool:
    """Return True if ``host`` is ``localhost`` or a loopback address."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Settings(BaseSettings):
    """Everything cloudtuner can be told, from ``CLOUDTUNER_*`` variables or command-line options."""

    model_config = SettingsConfigDict(env_prefix="CLOUDTUNER_", extra="ignore", frozen=True)

    data_dir: Path = Field(
        default=Path("~/.cloudtuner"),
        description="Everything the server keeps on disk: database, config history, outputs.",
    )
    database_url: str | None = Field(
        default=None,
        description=(
            "SQLAlchemy URL of the job store. Default: a SQLite file in the data dir. "
            "PostgreSQL: postgresql://user@host/db or postgresql+asyncpg://..."
        ),
    )
    host: str = Field(default="127.0.0.1", description="Address the server binds to.")
    port: int = Field(default=DEFAULT_PORT, ge=1, le=65535, description="Port the server listens on.")
    public_url: str | None = Field(
        default=None,
        description="Public base URL (no path) of this server, from which webhook and storage URLs are built.",
    )
    replicate_api_url: str = Field(
        default="https://api.replicate.com/v1",
        description="Where the Replicate client sends its requests.",
    )
    replicate_api_token: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("REPLICATE_API_TOKEN", "CLOUDTUNER_REPLICATE_API_TOKEN"),
        description="Replicate API token (r8_...).",
    )
    replicate_ca_bundle: Path | None = Field(
        default=None,
        validation_alias=AliasChoices("CLOUDTUNER_REPLICATE_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"),
        description=(
            "PEM file (or c_rehash'd directory) of the CAs trusted for Replicate's TLS certificate, used instead "
            "of the default ones, e.g. with the CA of a TLS-inspecting proxy. Else REQUESTS_CA_BUNDLE, else "
            "SSL_CERT_FILE. Proxies come from HTTPS_PROXY, HTTP_PROXY, ALL_PROXY and NO_PROXY."
        ),
    )
    replicate_connect_timeout_seconds: float = Field(
        default=5.0, gt=0, le=300, description="Seconds allowed for connecting to Replicate (or the proxy)."
    )
    replicate_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description=(
            "Seconds Replicate has to answer a call (read timeout), the call that creates a run included: "
            "past it the run's creation is reconciled before anything is sent again."
        ),
    )
    replicate_hardware: Annotated[dict[str, dict[str, Any]], NoDecode] = Field(
        default_factory=dict,
        description=(
            'Changes to Replicate hardware profiles, as JSON: {"gpu-l40s": {"model": "owner/name", '
            '"version": "<version id>", "price_per_second": 0.000975}}: another trainer model, a pinned '
            "version (default: the model's newest), another price."
        ),
    )

    @field_validator("replicate_ca_bundle", mode="before")
    @classmethod
    def _blank_ca_bundle(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("replicate_ca_bundle")
    @classmethod
    def _check_ca_bundle(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        path = value.expanduser()
        if not path.exists():
            raise ValueError(
                f"the CA bundle for Replicate, {path}, does not exist "
                "(it comes from CLOUDTUNER_REPLICATE_CA_BUNDLE, else REQUESTS_CA_BUNDLE, else SSL_CERT_FILE)"
            )
        return path

    @field_validator("replicate_hardware", mode="before")
    @classmethod
    def _parse_replicate_hardware(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        if not value.strip():
            return {}
        import json

        try:
            return json.loads(value)
        except ValueError as exc:
            raise ValueError(f"CLOUDTUNER_REPLICATE_HARDWARE is not valid JSON ({exc})") from None

    hf_token: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("HF_TOKEN", "CLOUDTUNER_HF_TOKEN"),
        description="HuggingFace token used to publish trained models.",
    )
    hf_endpoint: str = Field(
        default="https://huggingface.co",
        validation_alias=AliasChoices("HF_ENDPOINT", "CLOUDTUNER_HF_ENDPOINT"),
        description="The Hugging Face Hub the server lists published models on and pushes model cards to.",
    )
    secret_key: SecretStr | None = Field(
        default=None,
        description="Key that encrypts stored secrets; default: a key file in the data dir. Servers sharing "
        "one database must share it.",
    )
    provider_plugins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description=(
            "Extra providers to load, as 'module:factory' import strings; the factory takes the "
            "Settings and returns a provider."
        ),
    )
    scheduler_enabled: bool = Field(default=True, description="Run the background scheduler in this process.")
    dispatch_interval_seconds: float = Field(default=1.0, gt=0, description="Dispatch tick when nothing wakes it.")
    reconcile_interval_seconds: float = Field(
        default=5.0, gt=0, description="How often active jobs are synced with their provider."
    )
    lease_seconds: float = Field(default=60.0, gt=0, description="How long a claim on a job lasts without renewal.")
    max_dispatch_attempts: int = Field(
        default=3, ge=1, description="Provider submissions tried for a job before it is failed."
    )
    worker_lease_seconds: float = Field(
        default=30.0, gt=0, description="How long a worker's claim on a job lasts without a heartbeat."
    )
    worker_max_attempts: int = Field(
        default=3, ge=1, description="Workers a job is handed to (lost ones included) before it is failed."
    )
    local_max_jobs: int | None = Field(
        default=None, ge=1, description="Jobs the local provider runs at once (default: one per GPU, or 1)."
    )
    local_trainer_command: str | None = Field(
        default=None, description="Trainer command of the local provider (default: python -m simpletuner.train)."
    )
    worker_poll_seconds: float = Field(
        default=20.0, gt=0, le=120, description="Longest a worker's claim request waits for a job."
    )
    idempotency_ttl_hours: float = Field(default=24.0, gt=0, description="How long an idempotency key holds.")
    log_level: str = Field(default="info", description="Server log level.")
    session_hours: float = Field(
        default=168.0, gt=0, le=8760, description="How long a sign-in (session) lasts before it must be renewed."
    )
    login_max_failures: int = Field(
        default=5, ge=1, description="Failed sign-ins for one account, within the lockout time, that lock it."
    )
    login_max_failures_per_address: int = Field(
        default=20, ge=1, description="Failed sign-ins from one address, within the lockout time, that block it."
    )
    login_lockout_minutes: float = Field(
        default=15.0, gt=0, description="How long a locked account or blocked address waits before trying again."
    )
    audit_retention_days: float = Field(
        default=365.0,
        ge=0,
        description="Audit entries older than this are deleted (the chain stays verifiable); 0 keeps all.",
    )
    storage_default_bucket: str = Field(
        default="cloudtuner",
        pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
        description="Bucket of the built-in S3 endpoint that jobs deliver to (under jobs/<job id>/).",
    )
    storage_credentials_grace_seconds: float = Field(
        default=3600.0,
        ge=0,
        description="How long a job's storage credentials keep working after the job ends.",
    )
    storage_credentials_cache_seconds: float = Field(
        default=2.0,
        ge=0,
        le=60,
        description="How long a server process caches a storage credential it looked up; a revoked key "
        "stops working within this time on every server.",
    )

    @field_validator("data_dir")
    @classmethod
    def _expand_data_dir(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @field_validator("public_url")
    @classmethod
    def _strip_public_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        return value.strip().rstrip("/")

    @field_validator("provider_plugins", mode="before")
    @classmethod
    def _split_plugins(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @property
    def resolved_database_url(self) -> str:
        """Return the async SQLAlchemy URL of the job store."""
        url = self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'cloudtuner.db'}"
        for plain, async_form in (
            ("postgresql://", "postgresql+asyncpg://"),
            ("postgres://", "postgresql+asyncpg://"),
            ("sqlite://", "sqlite+aiosqlite://"),
        ):
            if url.startswith(plain):
                return async_form + url[len(plain) :]
        return url

    @property
    def binds_loopback_only(self) -> bool:
        """Return True if the server listens only on a loopback address (asked on every request)."""
        return _is_loopback_host(self.host)

    @property
    def config_history_dir(self) -> Path:
        """Return the git repository holding every saved config's history."""
        return self.data_dir / "config-history"

    @property
    def secret_key_file(self) -> Path:
        """Return the key file used when CLOUDTUNER_SECRET_KEY is not set."""
        return self.data_dir / "secret.key"

    @property
    def outputs_dir(self) -> Path:
        """Return the folder of the built-in S3 endpoint's objects."""
        return self.data_dir / "cloud_outputs"
