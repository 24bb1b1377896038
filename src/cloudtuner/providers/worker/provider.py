"""The ``worker`` provider: ``run_job`` calls nobody; it makes the job available to workers.

Dispatching a job here gives it a run id (``worker:<job id>``) and leaves it ``starting`` until
a worker claims it through the worker protocol (``services.workers_protocol``), which then
writes the job's state, logs and progress itself. The provider reads that state back through a
:class:`RunStateSource` the server attaches at start (providers do not touch the database).
"""

from __future__ import annotations

from typing import Any, Protocol

from cloudtuner.core.errors import ProviderUnavailableError
from cloudtuner.providers.base import (
    CloudJobInfo,
    CloudJobStatus,
    CloudTrainerService,
    ProviderCapabilities,
    RunRequest,
)

RUN_PREFIX = "worker:"


class RunStateSource(Protocol):
    """Where a worker provider reads its runs: the job store, as the server sees it."""

    async def run_info(self, provider_job_id: str, job_id: str) -> CloudJobInfo:
        """Return the run of job ``job_id`` as its worker last reported it."""

    def notify(self) -> None:
        """Wake the workers waiting for a job."""

    async def aclose(self) -> None:
        """Release what the source holds (the local provider's worker processes)."""


def run_id(job_id: str, name: str = "worker") -> str:
    """Return the run id of job ``job_id`` at the provider called ``name``."""
    return f"{name}:{job_id}"


def job_id_of(provider_job_id: str) -> str:
    """Return the job id a run id was made from."""
    return provider_job_id.partition(":")[2] or provider_job_id


class WorkerProvider(CloudTrainerService):
    """Self-hosted workers (and, named ``local``, this machine): runs are claimed, not sent."""

    def __init__(self, name: str = "worker") -> None:
        self._name = name
        self._source: RunStateSource | None = None

    def attach(self, source: RunStateSource) -> None:
        """Give the provider the job store's view of its runs (done once by the app at start)."""
        self._source = source

    @property
    def provider_name(self) -> str:
        return self._name

    @property
    def capabilities(self) -> ProviderCapabilities:
        # Workers fetch the packaged datasets themselves when they claim a job, and write logs
        # and progress straight to the job: the scheduler has nothing to upload or to poll.
        return ProviderCapabilities(live_logs=False, cancel=True, reaches_server=True, pushes_state=True)

    def _require_source(self) -> RunStateSource:
        if self._source is None:
            raise ProviderUnavailableError(f"The {self._name} provider is not attached to a job store yet.")
        return self._source

    async def validate_credentials(self) -> dict[str, Any]:
        return {"provider": self._name, "credentials": "workers authenticate with their own tokens"}

    async def run_job(self, request: RunRequest) -> CloudJobInfo:
        """Make the job available to workers; nothing is sent anywhere."""
        source = self._require_source()
        source.notify()
        return CloudJobInfo(
            provider_job_id=run_id(request.job_id, self._name), status=CloudJobStatus.QUEUED, reference=request.job_id
        )

    async def find_job_by_reference(self, job_id: str, request: RunRequest | None = None) -> CloudJobInfo | None:
        """A run id is a function of the job id: an interrupted start simply made it available."""
        del request
        source = self._require_source()
        source.notify()
        return CloudJobInfo(provider_job_id=run_id(job_id, self._name), status=CloudJobStatus.QUEUED, reference=job_id)

    async def get_job_status(self, provider_job_id: str) -> CloudJobInfo:
        return await self._require_source().run_info(provider_job_id, job_id_of(provider_job_id))

    async def get_job_logs(self, provider_job_id: str) -> str:
        """Workers append their logs to the job directly; there is nothing more to read here."""
        del provider_job_id
        return ""

    async def cancel_job(self, provider_job_id: str) -> bool:
        """Agree at once: the worker learns of the cancel on its next heartbeat and stops its trainer."""
        del provider_job_id
        return True

    async def list_jobs(self, limit: int = 50) -> list[CloudJobInfo]:
        del limit
        return []

    async def aclose(self) -> None:
        """Stop what the attached source runs (the local provider's workers)."""
        if self._source is not None:
            await self._source.aclose()
