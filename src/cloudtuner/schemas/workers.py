"""What crosses the wire for self-hosted workers: the admin API and the worker protocol.

A worker's token appears in one reply only: the one that creates (or rotates) it. The worker
protocol (``/api/worker/...``) is spoken by ``cloudtuner worker`` and authenticated by that
token, never by a user.
"""

from __future__ import annotations

import fnmatch
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class WorkerStatus(StrEnum):
    """What a worker is doing, as the list shows it."""

    CONNECTING = "connecting"
    """Created; it has not registered yet."""
    IDLE = "idle"
    BUSY = "busy"
    DRAINING = "draining"
    """Finishing its current job (if any) and taking no more."""
    OFFLINE = "offline"
    """No word from it for longer than the worker lease."""
    REVOKED = "revoked"


class GpuInfo(BaseModel):
    """One GPU a worker reported (``nvidia-smi``)."""

    name: str = Field(max_length=255, description="The GPU's model, e.g. 'NVIDIA A100-SXM4-80GB'.")
    memory_mb: int = Field(ge=0, description="Its memory in MiB.")


class CreateWorkerRequest(BaseModel):
    """A worker to create: its unique name and the labels jobs may ask for."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9._-]+$", description="Unique name.")
    labels: dict[str, str] = Field(default_factory=dict, description="Labels, e.g. {'gpu': 'a100'}.")


class WorkerView(BaseModel):
    """A worker as the admin API shows it (never its token)."""

    worker_id: str = Field(description="The worker's id.")
    name: str = Field(description="Its unique name.")
    status: WorkerStatus = Field(description="What it is doing now.")
    labels: dict[str, str] = Field(description="Labels set at creation, merged with those it registered with.")
    gpus: list[GpuInfo] = Field(description="The GPUs it reported when it registered.")
    hostname: str | None = Field(description="The machine it registered from.")
    persistent: bool = Field(description="True if it keeps taking jobs; False if it exits after one.")
    current_job_id: str | None = Field(description="The job it runs now, if any.")
    last_heartbeat_at: datetime | None = Field(description="When it was last heard from.")
    created_at: datetime = Field(description="When it was created.")
    registered_at: datetime | None = Field(description="When it last registered.")


class CreateWorkerResponse(BaseModel):
    """A created (or re-keyed) worker, with its token (shown this once) and the command to run it."""

    success: bool = Field(default=True, description="Always true.")
    worker_id: str = Field(description="The worker's id.")
    token: str = Field(description="The worker's token: shown once, kept only as a hash.")
    command: str = Field(description="The exact command that starts this worker.")
    worker: WorkerView = Field(description="The worker.")


class WorkerListResponse(BaseModel):
    """Every worker, oldest first."""

    workers: list[WorkerView] = Field(description="The workers.")


class WorkerResponse(BaseModel):
    """One worker."""

    success: bool = Field(default=True, description="Always true.")
    worker: WorkerView = Field(description="The worker.")


class DeleteWorkerResponse(BaseModel):
    """A deleted worker."""

    success: bool = Field(default=True, description="Always true.")
    worker_id: str = Field(description="The deleted worker's id.")


# --- the worker protocol ------------------------------------------------------------------------


class RegisterWorkerRequest(BaseModel):
    """What a worker says of itself when it starts."""

    gpus: list[GpuInfo] = Field(default_factory=list, description="Its GPUs (empty without nvidia-smi).")
    labels: dict[str, str] = Field(default_factory=dict, description="Labels from --label, merged with the admin's.")
    hostname: str | None = Field(default=None, max_length=255, description="Its host name.")
    persistent: bool = Field(default=False, description="True if it keeps taking jobs after the first.")


class RegisterWorkerResponse(BaseModel):
    """How the worker should pace itself, and the jobs it held before a restart (now given up)."""

    worker_id: str = Field(description="The worker's id.")
    name: str = Field(description="The worker's name.")
    heartbeat_seconds: float = Field(description="How often to heartbeat while running a job.")
    lease_seconds: float = Field(description="A job is lost when no heartbeat comes for this long.")
    abandoned_job_ids: list[str] = Field(description="Jobs this worker held before it restarted; they were requeued.")


class ClaimRequest(BaseModel):
    """A long-poll for work."""

    wait_seconds: float = Field(default=20.0, ge=0, le=120, description="Longest to wait for a job.")


class WorkerStorage(BaseModel):
    """Where and with what key a job's outputs go: the built-in S3 endpoint, limited to the job."""

    endpoint_url: str = Field(description="The S3 endpoint URL.")
    bucket: str = Field(description="The bucket.")
    prefix: str = Field(description="The key prefix the job may write under (ends with '/').")
    access_key_id: str = Field(description="The job's access key id.")
    secret_access_key: str = Field(description="The job's secret key.")
    region: str = Field(default="us-east-1", description="The region to sign for.")


class ClaimedJob(BaseModel):
    """A job handed to a worker."""

    job_id: str = Field(description="The job's id.")
    lease_token: str = Field(description="Proves the worker holds the job; sent with every report.")
    config: dict[str, Any] = Field(description="The trainer's config as submitted.")
    dataloader_config: list[dict[str, Any]] = Field(description="Its datasets as submitted.")
    has_datasets: bool = Field(description="True if the job's local datasets must be fetched from the server.")
    storage: WorkerStorage | None = Field(description="Where outputs go, or None if the server has no S3 endpoint.")
    heartbeat_seconds: float = Field(description="How often to heartbeat.")


class ClaimResponse(BaseModel):
    """The job handed over, or none; ``drain`` tells the worker to stop asking."""

    job: ClaimedJob | None = Field(description="The job, or None if none came within the wait.")
    drain: bool = Field(default=False, description="True if the worker is draining: it should exit.")


class HeartbeatRequest(BaseModel):
    """A worker still works on a job; ``running`` once the trainer has started."""

    lease_token: str = Field(description="The claim's lease token.")
    running: bool = Field(default=False, description="True once the trainer runs.")


class HeartbeatResponse(BaseModel):
    """Whether the worker should go on with the job."""

    keep_running: bool = Field(description="False: stop the trainer (cancelled, or the lease was lost).")
    reason: str | None = Field(default=None, description="Why it should stop.")
    drain: bool = Field(default=False, description="True if the worker should take no more jobs.")


class LogUploadRequest(BaseModel):
    """New log text of a job's trainer (appended to the job's log; progress is parsed from it)."""

    lease_token: str = Field(description="The claim's lease token.")
    text: str = Field(max_length=4_000_000, description="The new text, whole lines.")


class ResultRequest(BaseModel):
    """How a job ended on the worker."""

    lease_token: str = Field(description="The claim's lease token.")
    status: Literal["completed", "failed", "cancelled"] = Field(description="How the trainer ended.")
    error: str | None = Field(default=None, max_length=10_000, description="Why it failed.")
    exit_code: int | None = Field(default=None, description="The trainer's exit code.")


class AckResponse(BaseModel):
    """Whether a worker's report was applied (False: the lease was lost, the report was ignored)."""

    accepted: bool = Field(description="True if applied.")
    keep_running: bool = Field(default=True, description="False: stop the trainer.")


# --- job requirements ---------------------------------------------------------------------------


class WorkerRequirements(BaseModel):
    """What a job asks of a worker, from its config (``worker_labels``, ``worker_gpus``, ``worker_min_vram_gb``).

    Keys may be written with or without the leading ``--``. Label values are shell-style globs.
    """

    labels: dict[str, str] = Field(default_factory=dict)
    gpus: int = 0
    min_vram_mb: int = 0

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> WorkerRequirements:
        """Read the requirements from a job's config; unknown or malformed values ask for nothing."""

        def value(name: str) -> Any:
            return config.get(f"--{name}", config.get(name))

        labels: dict[str, str] = {}
        raw = value("worker_labels")
        if isinstance(raw, dict):
            labels = {str(k): str(v) for k, v in raw.items()}
        elif isinstance(raw, str):
            for part in raw.split(","):
                key, sep, glob = part.partition("=")
                if sep and key.strip():
                    labels[key.strip()] = glob.strip()
        gpus = _as_number(value("worker_gpus"))
        vram_gb = _as_number(value("worker_min_vram_gb"))
        return cls(labels=labels, gpus=int(gpus), min_vram_mb=int(vram_gb * 1024))

    def matches(self, labels: dict[str, str], gpus: list[GpuInfo]) -> bool:
        """Return True if a worker with ``labels`` and ``gpus`` can run the job."""
        for key, glob in self.labels.items():
            if key not in labels or not fnmatch.fnmatchcase(labels[key], glob):
                return False
        if self.gpus and len(gpus) < self.gpus:
            return False
        return not (self.min_vram_mb and (not gpus or min(g.memory_mb for g in gpus) < self.min_vram_mb))


def _as_number(raw: Any) -> float:
    if isinstance(raw, bool):
        return 0.0
    if isinstance(raw, int | float):
        return float(raw)
    if isinstance(raw, str):
        try:
            return float(raw)
        except ValueError:
            return 0.0
    return 0.0


def worker_command(orchestrator_url: str, token: str, labels: dict[str, str] | None = None) -> str:
    """Return the command that starts a worker with ``token`` against ``orchestrator_url``."""
    parts = ["cloudtuner", "worker", "--orchestrator-url", orchestrator_url, "--worker-token", token]
    for key, value in sorted((labels or {}).items()):
        parts += ["--label", f"{key}={value}"]
    return " ".join(parts)
