"""The ``worker`` provider: jobs run by self-hosted workers that claim them from this server."""

from cloudtuner.providers.worker.provider import RunStateSource, WorkerProvider

__all__ = ["RunStateSource", "WorkerProvider"]
