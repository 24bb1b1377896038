"""Job states and the table of legal transitions.

This module is the whole state machine of a job. It holds no I/O: the single writer of job
status (``cloudtuner.services.transitions.transition_job``) asks it whether a change is legal.
"""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    """Where a job is in its life. Values are the strings the API returns."""

    PENDING_APPROVAL = "pending_approval"
    QUEUED = "queued"
    UPLOADING = "uploading"
    STARTING = "starting"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        """Return True for completed, failed and cancelled: states a job never leaves."""
        return self in TERMINAL_STATES

    @property
    def is_active(self) -> bool:
        """Return True while a provider may be holding resources for the job."""
        return self in ACTIVE_STATES


TERMINAL_STATES: frozenset[JobStatus] = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})
ACTIVE_STATES: frozenset[JobStatus] = frozenset({JobStatus.UPLOADING, JobStatus.STARTING, JobStatus.RUNNING})
WAITING_STATES: frozenset[JobStatus] = frozenset({JobStatus.PENDING_APPROVAL, JobStatus.QUEUED})

_S = JobStatus
LEGAL_TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    _S.PENDING_APPROVAL: frozenset({_S.QUEUED, _S.FAILED, _S.CANCELLED}),
    # A provider may report a later state before we saw the earlier ones (a fast run observed
    # by polling), so forward skips are legal.
    _S.QUEUED: frozenset({_S.UPLOADING, _S.STARTING, _S.RUNNING, _S.COMPLETED, _S.FAILED, _S.CANCELLED}),
    # Back to queued is a requeue: an upload or a worker lost, to be dispatched again.
    _S.UPLOADING: frozenset({_S.QUEUED, _S.STARTING, _S.RUNNING, _S.COMPLETED, _S.FAILED, _S.CANCELLED}),
    _S.STARTING: frozenset({_S.QUEUED, _S.RUNNING, _S.COMPLETED, _S.FAILED, _S.CANCELLED}),
    _S.RUNNING: frozenset({_S.QUEUED, _S.COMPLETED, _S.FAILED, _S.CANCELLED}),
    _S.COMPLETED: frozenset(),
    _S.FAILED: frozenset(),
    _S.CANCELLED: frozenset(),
}


def is_legal_transition(current: JobStatus, target: JobStatus) -> bool:
    """Return True if a job in ``current`` may move to ``target``.

    Staying in the same state is not a transition and returns False; callers treat it as a no-op.
    """
    return target in LEGAL_TRANSITIONS[current]


def parse_status(value: str) -> JobStatus:
    """Return the JobStatus named by ``value``.

    Raises:
        ValueError: ``value`` names no state.
    """
    return JobStatus(value.strip().lower())
