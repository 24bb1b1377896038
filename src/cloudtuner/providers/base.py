"""The provider contract: what cloudtuner needs from anything that runs training jobs.

A provider is the seeds' ``CloudTrainerService``. The scheduler is its only caller for work that
costs money; API routes never call ``run_job``. Read the method docstrings as the contract; the
checklist for adding a provider is in ``docs/dev/providers.md``.

Errors a provider may raise, and what the scheduler does with them:

* :class:`~cloudtuner.core.errors.ProviderUnavailableError`: a passing fault (timeout, 429, 5xx,
  connection refused). For ``run_job`` it also means *the run may or may not exist*: the job is
  reconciled with :meth:`find_job_by_reference` before anything is sent again.
* :class:`~cloudtuner.core.errors.ProviderRejectedError`: the provider refused the request and the
  run certainly does not exist; the job fails with the message.
* :class:`~cloudtuner.core.errors.ProviderAuthError`: credentials missing or refused; the job
  fails with the message, which says how to fix it.

Any other exception from ``run_job`` is treated like ``ProviderUnavailableError``.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from cloudtuner.core.errors import WebhookRejectedError
from cloudtuner.core.progress import JobProgress
from cloudtuner.core.states import JobStatus


class CloudJobStatus(StrEnum):
    """A run's state as a provider reports it, in cloudtuner's words."""

    QUEUED = "queued"
    STARTING = "starting"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    def as_job_status(self) -> JobStatus:
        """Return the job state this run state corresponds to.

        A run the provider has queued is, for cloudtuner, a job that is starting: it has left our
        queue and holds a place at the provider.
        """
        if self is CloudJobStatus.QUEUED:
            return JobStatus.STARTING
        return JobStatus(self.value)


@dataclass(frozen=True)
class ProviderCapabilities:
    """What a provider can do; the scheduler and the UI adapt to these flags."""

    cost_tracking: bool = False
    live_logs: bool = False
    webhooks: bool = False
    cancel: bool = True
    uploads_datasets: bool = False
    max_upload_bytes: int | None = None
    dataset_extract_root: str | None = None
    """Where the trainer unpacks the dataset archive; dataset paths sent to it are rewritten to match."""
    publishes_to: frozenset[str] = frozenset()
    """Where its runs can deliver a trained model (:attr:`RunRequest.delivery`): ``"huggingface"``
    and/or ``"s3"`` (any S3-compatible endpoint, which is also how a run reaches this server's
    built-in endpoint for local download). Submissions asking for anything else are refused."""
    reaches_server: bool = False
    """True if its runs can reach this server at the address the server was called at (a worker on
    the same network); otherwise delivering back to this server needs the server's public URL."""
    pushes_state: bool = False
    """True if its runs write their state, logs and progress into the job store themselves (the
    worker protocol): the scheduler then never polls them, except to carry out a pending cancel."""


@dataclass(frozen=True)
class CloudJobInfo:
    """One run as the provider sees it."""

    provider_job_id: str
    status: CloudJobStatus
    reference: str | None = None
    """The cloudtuner job id the run was created for (from ``RunRequest.job_id``), if known."""
    progress: JobProgress | None = None
    cost_usd: float | None = None
    hardware: str | None = None
    error: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    output: dict[str, Any] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DatasetArchive:
    """A job's local datasets packed into one zip (see ``cloudtuner.packaging``), ready to upload.

    ``sha256`` is the hash of the archive's bytes: the same datasets give the same hash, so a
    provider that still holds a file with this hash may use it instead of uploading again. The
    dataloader config in the RunRequest already points at the provider's ``dataset_extract_root``.
    """

    path: Path
    sha256: str
    size_bytes: int


@dataclass(frozen=True)
class HubDelivery:
    """Push the trained model to the Hugging Face Hub repository ``repo_id`` with ``token``."""

    repo_id: str
    token: str | None = field(default=None, repr=False)
    private: bool = True


@dataclass(frozen=True)
class S3Delivery:
    """Upload the trained model to ``s3://bucket/prefix/`` of an S3-compatible endpoint.

    ``prefix`` has no trailing slash. ``endpoint_url`` None means AWS S3. For local download the
    endpoint is this server's built-in one and the keys are the job's own, limited to ``prefix``.
    """

    bucket: str
    prefix: str
    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)
    public_base_url: str | None = None


@dataclass(frozen=True)
class DeliveryTarget:
    """Where a run delivers the trained model: ``destination`` is ``huggingface`` (with ``hub``),
    ``s3`` or ``local`` (both with ``s3``). Holds secrets: never log it or keep it."""

    destination: str
    hub: HubDelivery | None = None
    s3: S3Delivery | None = None


ProgressCallback = Callable[[str, int, int], Awaitable[None]]
"""Called as ``report(stage, done, total)`` while a provider does slow work (``"uploading"``, bytes)."""


@dataclass(frozen=True)
class RunRequest:
    """Everything a provider is given to start one run for one job."""

    job_id: str
    config: dict[str, Any]
    dataloader_config: list[dict[str, Any]]
    tracker_run_name: str | None = None
    hardware: str | None = None
    publishing: dict[str, Any] | None = None
    """The job's publishing settings as stored (no secret in the clear: see ``services.publishing``);
    stable across attempts, so a provider may derive config text from it. Use :attr:`delivery` to deliver."""
    config_name: str | None = None
    dataset_archive: DatasetArchive | None = None
    """The packaged local datasets, for providers whose capabilities say ``uploads_datasets``."""
    webhook_url: str | None = None
    """Where the provider should send run events (built from CLOUDTUNER_PUBLIC_URL), or None to poll."""
    dispatched_at: datetime | None = None
    """When this attempt was recorded; a run found by reference was created after it."""
    report_progress: ProgressCallback | None = None
    delivery: DeliveryTarget | None = None
    """Where the run delivers the trained model, with the credentials it needs (None: nowhere).
    Only destinations in the provider's ``capabilities.publishes_to`` are ever given."""


@dataclass(frozen=True)
class WebhookEvent:
    """One verified webhook delivery: its unique id (for replay protection) and the run it describes."""

    event_id: str
    info: CloudJobInfo
    logs: str | None = None
    """The run's whole log so far, when the delivery carries it."""


NOTHING_CREATED = "nothing_created"
"""``ProviderUnavailableError.context["create_outcome"]`` from :meth:`CloudTrainerService.run_job`
when the provider turned the run away before creating it (for example its rate limit)."""


class CloudTrainerService(abc.ABC):
    """A place where training jobs run: Replicate, self-hosted workers, this machine.

    Implementations must be safe to call concurrently from one event loop, must not block it
    (do disk or CPU work in a thread), and must bound every network call with a timeout.
    """

    @property
    @abc.abstractmethod
    def provider_name(self) -> str:
        """Return the name users pass as ``?provider=``: lowercase, stable, unique."""

    @property
    def capabilities(self) -> ProviderCapabilities:
        """Return what this provider can do."""
        return ProviderCapabilities()

    @property
    def supports_cost_tracking(self) -> bool:
        """Return True if runs report what they cost."""
        return self.capabilities.cost_tracking

    @property
    def supports_live_logs(self) -> bool:
        """Return True if logs can be read while a run is going."""
        return self.capabilities.live_logs

    @abc.abstractmethod
    async def validate_credentials(self) -> dict[str, Any]:
        """Check the provider's credentials and return what it says about the account.

        Raises:
            ProviderAuthError: the credentials are missing or refused; the message says how to fix it.
            ProviderUnavailableError: the provider could not be asked.
        """

    @abc.abstractmethod
    async def run_job(self, request: RunRequest) -> CloudJobInfo:
        """Start one run for ``request.job_id`` and return it as the provider now sees it.

        The provider must record ``request.job_id`` with the run (in its metadata, name or webhook
        URL) so that :meth:`find_job_by_reference` finds it: that is how a crash or a timeout
        between sending the request and hearing the reply is reconciled without a second run.
        Packaging and uploading datasets happen here, for providers that upload them.

        Raises:
            ProviderRejectedError: refused; the run does not exist.
            ProviderAuthError: credentials missing or refused; the run does not exist.
            ProviderUnavailableError: the outcome is unknown; the run may exist. With
                ``context["create_outcome"] == NOTHING_CREATED`` the provider refused before
                creating anything (a rate limit): the job goes back to the queue and the attempt
                does not count towards the job's dispatch attempts.
        """

    async def find_job_by_reference(self, job_id: str, request: RunRequest | None = None) -> CloudJobInfo | None:
        """Return the run created for cloudtuner job ``job_id``, or None if there is none.

        None is a promise that the provider holds no such run, so the job may be sent again.
        ``request`` is the job's run request as the last attempt sent it (without the archive),
        for providers that recognise a run by its inputs. The default looks through
        :meth:`list_jobs`; providers with a better index override it.

        Raises:
            ProviderUnavailableError: the provider could not be asked; nothing is known.
        """
        del request
        for info in await self.list_jobs(limit=200):
            if info.reference == job_id:
                return info
        return None

    @abc.abstractmethod
    async def get_job_status(self, provider_job_id: str) -> CloudJobInfo:
        """Return the run's current state, progress, cost and outcome.

        A run the provider no longer knows is returned with status FAILED and an error saying so;
        this method does not raise for it.

        Raises:
            ProviderUnavailableError: the provider could not be asked.
        """

    @abc.abstractmethod
    async def get_job_logs(self, provider_job_id: str) -> str:
        """Return the run's whole log so far ("" when there is none yet).

        Raises:
            ProviderUnavailableError: the provider could not be asked.
        """

    @abc.abstractmethod
    async def cancel_job(self, provider_job_id: str) -> bool:
        """Ask the provider to stop the run; return True once it is stopping or already finished.

        Returns False if the provider does not know the run. Calling it twice is harmless.

        Raises:
            ProviderUnavailableError: the provider could not be asked; try again later.
        """

    @abc.abstractmethod
    async def list_jobs(self, limit: int = 50) -> list[CloudJobInfo]:
        """Return up to ``limit`` of this provider's runs, newest first.

        Raises:
            ProviderUnavailableError: the provider could not be asked.
        """

    async def parse_webhook(self, headers: Mapping[str, str], body: bytes, now: datetime) -> WebhookEvent:
        """Verify one webhook delivery (signature, freshness) and return what it says.

        ``headers`` have lowercase names. Providers without webhooks keep this default.

        Raises:
            WebhookRejectedError: unsigned, badly signed, stale, or not a run event.
        """
        del headers, body, now
        raise WebhookRejectedError(f"The {self.provider_name} provider does not accept webhooks.")

    async def aclose(self) -> None:  # noqa: B027 - optional hook; most providers hold nothing to close
        """Release connections and other resources; called once when the server stops."""
