"""Typed calls for the job queue (order, positions, priorities, limits), over a :class:`CloudtunerClient`."""

from __future__ import annotations

from typing import Any

from cloudtuner.client.http import CloudtunerClient
from cloudtuner.schemas.queue import QueuedJob, QueueLimits, QueueResponse


def get_queue(client: CloudtunerClient, *, limit: int = 100) -> QueueResponse:
    """Return the waiting jobs in start order (the first ``limit``), the busy count and the limits."""
    return QueueResponse.model_validate(client.request("GET", "/api/queue", params={"limit": limit}))


def get_position(client: CloudtunerClient, job_id: str) -> QueuedJob:
    """Return a waiting job's place in the queue."""
    return QueuedJob.model_validate(client.request("GET", f"/api/queue/{job_id}/position"))


def set_priority(client: CloudtunerClient, job_id: str, priority: int) -> QueuedJob:
    """Change a waiting job's priority; return its new place."""
    reply = client.request("PUT", f"/api/queue/{job_id}/priority", json={"priority": priority})
    return QueuedJob.model_validate(reply)


def get_limits(client: CloudtunerClient) -> QueueLimits:
    """Return the queue's limits and the starting priority of each role."""
    return QueueLimits.model_validate(client.request("GET", "/api/queue/limits"))


def update_limits(client: CloudtunerClient, changes: dict[str, Any]) -> QueueLimits:
    """Change the limits named in ``changes`` (a value of None removes that limit)."""
    return QueueLimits.model_validate(client.request("PUT", "/api/queue/limits", json=changes))
