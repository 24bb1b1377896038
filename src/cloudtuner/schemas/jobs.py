"""What crosses the wire for jobs: the seeds' request and reply shapes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

from cloudtuner.core.states import JobStatus
from cloudtuner.schemas.artifacts import Artifact
from cloudtuner.schemas.costs import CostEstimate, CostLimitStatus
from cloudtuner.schemas.publishing import PublishingRequest, PublishingView
from cloudtuner.schemas.queue import MAX_PRIORITY, MIN_PRIORITY
from cloudtuner.schemas.uploads import UploadSummary


class DatasetConfig(BaseModel):
    """One dataset of the dataloader, as in SimpleTuner's multidatabackend.json.

    Fields beyond those named here are kept as given and passed to the trainer.
    """

    model_config = ConfigDict(extra="allow")

    id: str = Field(min_length=1, max_length=255, description="Unique name of the dataset.")
    type: str = Field(min_length=1, max_length=64, description="Where the data lives: local, aws, huggingface, ...")
    dataset_type: str | None = Field(default=None, description="image, text_embeds, image_embeds, ...")
    instance_data_dir: str | None = Field(default=None, description="Folder of the data (local datasets).")
    caption_strategy: str | None = Field(default=None, description="textfile, filename, parquet, ...")
    resolution: float | int | None = Field(default=None, description="Training resolution.")


class SubmitJobRequest(BaseModel):
    """A training job: a saved config by name, or an inline config with its datasets."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"config_name_to_load": "my-training-config", "tracker_run_name": "api-test-run"},
                {
                    "config": {
                        "--model_family": "flux",
                        "--model_type": "lora",
                        "--pretrained_model_name_or_path": "black-forest-labs/FLUX.1-dev",
                        "--output_dir": "/outputs/flux-lora",
                        "--max_train_steps": 1000,
                        "--lora_rank": 16,
                    },
                    "dataloader_config": [
                        {
                            "id": "training-images",
                            "type": "local",
                            "dataset_type": "image",
                            "instance_data_dir": "/data/datasets/my-dataset",
                            "caption_strategy": "textfile",
                            "resolution": 1024,
                        }
                    ],
                },
            ]
        },
    )

    config_name_to_load: str | None = Field(default=None, max_length=255, description="Name of a saved config to run.")
    config: dict[str, Any] | None = Field(
        default=None, description='Inline SimpleTuner arguments, such as {"--model_family": "flux"}.'
    )
    dataloader_config: list[DatasetConfig] | None = Field(
        default=None, description="The datasets, as in multidatabackend.json; required with an inline config."
    )
    tracker_run_name: str | None = Field(default=None, max_length=255, description="Name of the run.")
    idempotency_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        description="The same key from the same caller within 24 h returns the job it created.",
    )
    upload_consent: bool | None = Field(default=None, description="Consent to upload local datasets to the provider.")
    hardware: str | None = Field(default=None, max_length=64, description="Hardware profile, e.g. gpu-l40s.")
    priority: int | None = Field(
        default=None,
        ge=MIN_PRIORITY,
        le=MAX_PRIORITY,
        description="Queue priority to start at (needs queue.manage); by default the submitter's role's.",
    )
    publishing: PublishingRequest | None = Field(
        default=None,
        description="Where the trained model goes: huggingface, s3, local or none (see PublishingRequest); "
        "left out, it comes back to this server when it has a public URL.",
    )
    budget_usd: float | None = Field(
        default=None,
        gt=0,
        le=1_000_000,
        validation_alias=AliasChoices("budget_usd", "max_cost_usd"),
        description="This job's budget cap, US dollars: it is cancelled when its accrued cost reaches it.",
    )

    @field_validator("config_name_to_load", "tracker_run_name", "hardware")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        return value or None


class JobProgressResponse(BaseModel):
    """The latest progress a job reported."""

    stage: str | None = None
    step: int | None = None
    total_steps: int | None = None
    percent: float | None = None
    loss: float | None = None
    learning_rate: float | None = None


class ConfigSnapshot(BaseModel):
    """The exact config a job ran with: where it came from and its fingerprint."""

    source: str = Field(description="saved, inline or imported.")
    name: str | None = Field(default=None, description="The saved config's name.")
    commit: str | None = Field(default=None, description="Commit of the config history holding this version.")
    sha256: str | None = Field(default=None, description="sha256 of the canonical JSON of config and datasets.")


class JobEventResponse(BaseModel):
    """One change of status."""

    from_status: JobStatus | None
    to_status: JobStatus
    cause: str
    detail: str | None = None
    created_at: datetime


class JobSummary(BaseModel):
    """A job as the list shows it."""

    job_id: str
    status: JobStatus
    provider: str
    provider_job_id: str | None = None
    owner_id: str
    config_name: str | None = None
    tracker_run_name: str | None = None
    hardware: str | None = None
    progress: JobProgressResponse | None = None
    cost_usd: float = 0.0
    error: str | None = None
    cancel_requested: bool = False
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_seconds: float | None = Field(default=None, description="Run time so far, or in all once finished.")
    cost_final: bool = Field(default=False, description="True once the provider reported the final cost.")
    estimate_low_usd: float | None = Field(default=None, description="Lower end of the estimate at submission.")
    estimate_high_usd: float | None = Field(default=None, description="Upper end of the estimate at submission.")
    budget_usd: float | None = Field(default=None, description="The job's budget cap, if it has one.")


class JobDetail(JobSummary):
    """A job with its config, datasets and timeline."""

    config: dict[str, Any]
    dataloader_config: list[dict[str, Any]]
    config_snapshot: ConfigSnapshot
    publishing: PublishingView | None = Field(default=None, description="Where the model goes; secrets never shown.")
    artifacts: list[Artifact] = Field(default_factory=list, description="The files the job delivered so far.")
    upload_consent: bool | None = None
    upload_summary: UploadSummary | None = Field(
        default=None, description="The local datasets uploaded to the provider: files, sizes, exclusions."
    )
    idempotency_key: str | None = None
    dispatch_attempts: int = 0
    price_per_second: float | None = Field(default=None, description="What the job's hardware costs per second.")
    run_seconds: float | None = Field(default=None, description="Seconds billed so far (or run, while unreported).")
    cost_reserved_usd: float = Field(
        default=0.0, description="The estimate held against spending limits until the job ends."
    )
    cost_estimate: CostEstimate | None = Field(default=None, description="The estimate at submission, with its basis.")
    events: list[JobEventResponse] = Field(default_factory=list)


class SubmitJobResponse(BaseModel):
    """The reply to a submission."""

    success: bool = True
    job_id: str
    status: JobStatus
    idempotent_hit: bool = Field(description="True when an earlier job with this idempotency_key was returned.")
    estimate: CostEstimate | None = Field(default=None, description="What the job is expected to cost, as a range.")
    warnings: list[str] = Field(
        default_factory=list, description="Things to know, such as a spending limit nearly or already used up."
    )
    job: JobDetail


class JobResponse(BaseModel):
    """The reply to GET /api/cloud/jobs/{id}."""

    job: JobDetail


class JobListResponse(BaseModel):
    """A page of jobs, newest first."""

    jobs: list[JobSummary]
    next_cursor: str | None = Field(default=None, description="Pass as ?cursor= for the next page.")
    has_more: bool = False
    sync: SyncResponse | None = Field(default=None, description="Present when sync_active=true was asked.")


class JobLogsResponse(BaseModel):
    """A job's log text from ``offset`` on."""

    job_id: str
    logs: str
    offset: int = Field(description="Where in the whole log this text starts.")
    next_offset: int = Field(description="Pass as ?offset= to get only what comes after.")
    status: JobStatus


class CancelJobResponse(BaseModel):
    """The reply to a cancel."""

    success: bool = True
    job_id: str
    status: JobStatus
    cancel_requested: bool = Field(
        description="True while the provider has been asked to stop and has not yet confirmed."
    )


class DeleteJobResponse(BaseModel):
    """The reply to a delete."""

    success: bool = True
    job_id: str
    deleted: bool = True
    artifacts_deleted: int = Field(
        default=0, description="Delivered files deleted from this server (with delete_artifacts=true)."
    )
    artifacts_kept: int = Field(default=0, description="Delivered files left where they are.")


class SyncResponse(BaseModel):
    """What a sync with the providers did."""

    success: bool = True
    synced: int = Field(description="Active jobs whose state was read from their provider.")
    imported: int = Field(default=0, description="Provider runs that were not yet known and were added.")
    errors: list[str] = Field(default_factory=list, description="Providers or jobs that could not be read.")


JobListResponse.model_rebuild()


class PreviewResponse(BaseModel):
    """What submitting this job would do, before it is submitted."""

    success: bool = True
    provider: str
    uploads_local_data: bool = Field(description="True if local datasets would be uploaded to the provider.")
    consent_mode: str = Field(description="always_ask, always_allow or never_upload.")
    needs_upload_consent: bool = Field(description='True if the submission must carry "upload_consent": true.')
    upload_summary: UploadSummary | None = None
    estimate: CostEstimate | None = Field(default=None, description="What the job would cost, as a range.")
    cost_limits: list[CostLimitStatus] = Field(
        default_factory=list, description="The spending limits the job would count against, as they stand."
    )
