"""Where a job's trained model goes: the ``publishing`` field of a submission and of a job.

A submission says one destination (``destination``, or implied by the fields it sets):

- ``huggingface``: pushed to the Hub repository ``hub_model_id`` (``owner/name``), private unless
  ``private`` is false, with the token ``hf_token`` or else the server's ``HF_TOKEN``; cloudtuner
  adds a model card (base model, training settings, datasets, cost) when the job completes.
- ``s3``: uploaded to ``s3_bucket`` of an S3-compatible endpoint (``s3_endpoint_url``; AWS when
  left out) under ``s3_base_path/<job id>/``, with ``s3_access_key``/``s3_secret_key``.
- ``local``: sent back to this server's built-in S3 endpoint (``<data dir>/cloud_outputs/``), with
  the job's own short-lived key; the provider needs the server's public URL to reach it.
- ``none``: not delivered by cloudtuner.

Leaving ``publishing`` out delivers locally when the server has a public URL and the provider can
deliver there (the seeds' "download only" mode), and nowhere otherwise. Field names follow the
trainer's inputs (``hub_model_id``, ``s3_bucket``, ...). Secrets are write-only: replies show
which ones are stored (:attr:`PublishingView.stored_secrets`), never their values.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator


class PublishingDestination(StrEnum):
    """Where a trained model is delivered."""

    NONE = "none"
    HUGGINGFACE = "huggingface"
    S3 = "s3"
    LOCAL = "local"


class PublishingRequest(BaseModel):
    """The ``publishing`` field of a submission (see the module docstring)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"destination": "huggingface", "hub_model_id": "username/my-lora", "private": True},
                {
                    "destination": "s3",
                    "s3_endpoint_url": "https://s3.example.com",
                    "s3_bucket": "models",
                    "s3_base_path": "flux",
                    "s3_access_key": "AKIA...",
                    "s3_secret_key": "...",
                },
                {"destination": "local"},
            ]
        },
    )

    destination: PublishingDestination | None = Field(
        default=None, description="huggingface, s3, local or none; implied by the other fields when left out."
    )
    push_to_hub: bool | None = Field(default=None, description="false turns Hub publishing off (as destination none).")
    hub_model_id: str | None = Field(
        default=None, max_length=200, description="The Hub repository, owner/name (e.g. username/my-lora)."
    )
    private: bool = Field(default=True, description="Make the Hub repository private (the default) or public.")
    hf_token: SecretStr | None = Field(
        default=None, description="A Hugging Face token with write access; default: the server's HF_TOKEN."
    )
    s3_endpoint_url: str | None = Field(
        default=None, max_length=2000, description="The S3-compatible endpoint; leave out for AWS S3."
    )
    s3_bucket: str | None = Field(default=None, max_length=63, description="The bucket to upload to.")
    s3_base_path: str | None = Field(
        default=None, max_length=900, description="Folder in the bucket; each job delivers below <folder>/<job id>/."
    )
    s3_region: str | None = Field(default=None, max_length=64, description="The bucket's region (default us-east-1).")
    s3_public_base_url: str | None = Field(
        default=None, max_length=2000, description="Public URL the bucket's files are served from, if any."
    )
    s3_access_key: SecretStr | None = Field(default=None, description="Access key id for the bucket.")
    s3_secret_key: SecretStr | None = Field(default=None, description="Secret access key for the bucket.")

    @field_validator(
        "hub_model_id", "s3_endpoint_url", "s3_bucket", "s3_base_path", "s3_region", "s3_public_base_url", mode="before"
    )
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.strip()
            return value or None
        return value

    @field_validator("hf_token", "s3_access_key", "s3_secret_key", mode="before")
    @classmethod
    def _blank_secret_is_none(cls, value: object) -> object:
        if isinstance(value, str):
            return value.strip() or None
        return value


class PublishingView(BaseModel):
    """A job's delivery settings as replies show them: never a secret, only which ones are stored."""

    destination: PublishingDestination
    hub_model_id: str | None = None
    private: bool | None = None
    s3_endpoint_url: str | None = None
    s3_bucket: str | None = None
    s3_base_path: str | None = Field(default=None, description="The folder the job delivers to (with its job id).")
    s3_region: str | None = None
    s3_public_base_url: str | None = None
    stored_secrets: list[str] = Field(
        default_factory=list, description="Secrets kept (encrypted) for this job, by name: hf_token, s3_secret_key..."
    )
