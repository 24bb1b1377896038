"""The one settings object.

Built by the entry points (``cloudtuner server``, the app factory, tests) and passed down
explicitly; no module reads the environment for itself. Names are fixed by SPEC.md: the prefix is
``CLOUDTUNER_``, except the provider tokens, which keep the names users already export.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Any

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_PORT = 8001


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
    hf_token: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("HF_TOKEN", "CLOUDTUNER_HF_TOKEN"),
        description="HuggingFace token used to publish trained models.",
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
    idempotency_ttl_hours: float = Field(default=24.0, gt=0, description="How long an idempotency key holds.")
    log_level: str = Field(default="info", description="Server log level.")

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
        """Return True if the server listens only on a loopback address."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

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
