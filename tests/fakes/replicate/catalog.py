"""Models and versions the fake knows, including the seeded ``simpletuner/advanced-trainer``.

Versions carry a Cog-style ``openapi_schema`` (reference section 6.3).  The trainer's ``Input``
schema follows the predictor inputs of reference section 11; its live schema on Replicate is
UNCONFIRMED, so this is an inference from the predictor source.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from .util import iso

COG_VERSION = "0.16.9"
TRAINER_OWNER = "simpletuner"
TRAINER_NAME = "advanced-trainer"
TRAINER_MODELS = (
    "advanced-trainer",
    "advanced-trainer-l40s",
    "advanced-trainer-h100",
)


def stable_version_id(ref: str) -> str:
    """A 64-hex version id derived from ``ref`` so that every process seeds the same ids."""
    return hashlib.sha256(f"fake-replicate:{ref}".encode()).hexdigest()


@dataclass
class Version:
    """One model version; ``seq`` orders versions by creation (higher is newer)."""

    id: str
    created_at: float
    seq: int
    openapi_schema: dict[str, Any]
    cog_version: str = COG_VERSION

    def to_json(self) -> dict[str, Any]:
        """Version object with all four fields Python 1.0.7 requires, non-null."""
        return {
            "id": self.id,
            "created_at": iso(self.created_at),
            "cog_version": self.cog_version,
            "openapi_schema": self.openapi_schema,
        }


@dataclass
class Model:
    """A model; ``versions`` is kept newest first.  ``trainer`` marks SimpleTuner trainer models
    whose runs produce trainer logs and a string output."""

    owner: str
    name: str
    created_at: float
    seq: int
    visibility: str = "public"
    description: str | None = None
    hardware: str = "gpu-l40s"
    is_official: bool = False
    trainer: bool = False
    run_count: int = 0
    versions: list[Version] = field(default_factory=list)

    @property
    def full_name(self) -> str:
        """``owner/name``."""
        return f"{self.owner}/{self.name}"

    def find_version(self, version_id: str) -> Version | None:
        """The version with this id, or None."""
        return next((v for v in self.versions if v.id == version_id), None)

    def to_json(self) -> dict[str, Any]:
        """Model object with the fields Python 1.0.7 requires (url, owner, name, visibility,
        run_count) plus the optional ones of the OpenAPI document."""
        latest = self.versions[0].to_json() if self.versions else None
        return {
            "url": f"https://replicate.com/{self.full_name}",
            "owner": self.owner,
            "name": self.name,
            "description": self.description,
            "visibility": self.visibility,
            "github_url": None,
            "paper_url": None,
            "license_url": None,
            "run_count": self.run_count,
            "cover_image_url": None,
            "default_example": None,
            "latest_version": latest,
            "is_official": self.is_official,
            "created_at": iso(self.created_at),
        }


def _prop(order: int, schema: dict[str, Any], title: str, description: str) -> dict[str, Any]:
    return {**schema, "title": title, "description": description, "x-order": order}


_SECRET = {"type": "string", "format": "password", "writeOnly": True, "x-cog-secret": True}


def trainer_input_schema() -> dict[str, Any]:
    """``components.schemas.Input`` of the advanced trainer (reference section 11)."""
    props: dict[str, Any] = {
        "images": _prop(
            0,
            {"type": "string", "format": "uri"},
            "Images",
            "Zip or tar archive of the training images (an uploaded file URL)",
        ),
        "config_json": _prop(
            1,
            {"type": "string"},
            "Config Json",
            "Training config: inline JSON text or a path inside the container",
        ),
        "dataloader_json": _prop(
            2, {"type": "string"}, "Dataloader Json", "Multidatabackend config: inline JSON array or a path"
        ),
        "max_train_steps": _prop(
            3,
            {"type": "integer", "minimum": 1},
            "Max Train Steps",
            "Optional override of the number of training steps",
        ),
        "s3_bucket": _prop(4, {"type": "string"}, "S3 Bucket", "Bucket to publish outputs to"),
        "s3_region": _prop(5, {"type": "string"}, "S3 Region", "Region of the bucket"),
        "s3_endpoint_url": _prop(6, {"type": "string"}, "S3 Endpoint Url", "S3-compatible endpoint"),
        "s3_base_path": _prop(7, {"type": "string"}, "S3 Base Path", "Key prefix for outputs"),
        "s3_public_base_url": _prop(
            8, {"type": "string"}, "S3 Public Base Url", "Public URL prefix of the published outputs"
        ),
        "s3_access_key": _prop(9, dict(_SECRET), "S3 Access Key", "S3 access key id"),
        "s3_secret_key": _prop(10, dict(_SECRET), "S3 Secret Key", "S3 secret access key"),
        "hub_model_id": _prop(
            11, {"type": "string"}, "Hub Model Id", "Hugging Face repository id to push to; needs hf_token"
        ),
        "hf_token": _prop(12, dict(_SECRET), "Hf Token", "Hugging Face token"),
        "lycoris_config": _prop(
            13,
            {"type": "string"},
            "Lycoris Config",
            "LyCORIS config as JSON text or a path; needed for lora_type=lycoris",
        ),
        "return_logs": _prop(
            14,
            {"type": "boolean", "default": True},
            "Return Logs",
            "Print the tail of debug.log into the prediction logs",
        ),
    }
    return {
        "type": "object",
        "title": "Input",
        "properties": props,
        "required": ["config_json", "dataloader_json"],
    }


def cog_schema(input_schema: dict[str, Any], output_schema: dict[str, Any]) -> dict[str, Any]:
    """A Cog OpenAPI document around the given Input/Output schemas (no training endpoints)."""
    status = {
        "type": "string",
        "title": "Status",
        "enum": ["starting", "processing", "succeeded", "canceled", "failed"],
        "description": "An enumeration.",
    }
    return {
        "openapi": "3.0.2",
        "info": {"title": "Cog", "version": "0.1.0"},
        "paths": {
            "/": {"get": {"summary": "Root", "operationId": "root__get"}},
            "/health-check": {"get": {"summary": "Healthcheck"}},
            "/predictions": {"post": {"summary": "Predict"}},
            "/predictions/{prediction_id}": {"put": {"summary": "Predict Idempotent"}},
            "/predictions/{prediction_id}/cancel": {"post": {"summary": "Cancel"}},
            "/shutdown": {"post": {"summary": "Start Shutdown"}},
        },
        "components": {
            "schemas": {
                "Input": input_schema,
                "Output": output_schema,
                "Status": status,
                "PredictionRequest": {"type": "object", "title": "PredictionRequest"},
                "PredictionResponse": {"type": "object", "title": "PredictionResponse"},
                "HTTPValidationError": {"type": "object", "title": "HTTPValidationError"},
                "ValidationError": {"type": "object", "title": "ValidationError"},
            }
        },
    }


def trainer_schema() -> dict[str, Any]:
    """Full ``openapi_schema`` of an advanced-trainer version (output: a single string)."""
    return cog_schema(trainer_input_schema(), {"type": "string", "title": "Output"})


def lora_schema() -> dict[str, Any]:
    """Schema of a version produced by a successful training (a text-to-image LoRA)."""
    inputs = {
        "type": "object",
        "title": "Input",
        "properties": {
            "prompt": _prop(0, {"type": "string"}, "Prompt", "Text prompt"),
            "num_inference_steps": _prop(
                1,
                {"type": "integer", "default": 28, "minimum": 1, "maximum": 50},
                "Num Inference Steps",
                "Number of denoising steps",
            ),
            "lora_scale": _prop(
                2,
                {"type": "number", "default": 1.0, "minimum": 0, "maximum": 2},
                "Lora Scale",
                "Strength of the LoRA",
            ),
        },
        "required": ["prompt"],
    }
    output = {"type": "array", "title": "Output", "items": {"type": "string", "format": "uri"}}
    return cog_schema(inputs, output)


def input_schema_of(version: Version) -> dict[str, Any] | None:
    """``TrainingInput`` if the version declares one, else ``Input`` (as Cog's CLI does)."""
    schemas = version.openapi_schema.get("components", {}).get("schemas", {})
    found = schemas.get("TrainingInput") or schemas.get("Input")
    return found if isinstance(found, dict) else None
