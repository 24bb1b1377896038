"""The job state machine: the whole transition table, pair by pair."""

from __future__ import annotations

import itertools

import pytest

from cloudtuner.core.states import (
    ACTIVE_STATES,
    LEGAL_TRANSITIONS,
    TERMINAL_STATES,
    JobStatus,
    is_legal_transition,
    parse_status,
)

S = JobStatus
EXPECTED_LEGAL = {
    (S.PENDING_APPROVAL, S.QUEUED), (S.PENDING_APPROVAL, S.FAILED), (S.PENDING_APPROVAL, S.CANCELLED),
    (S.QUEUED, S.UPLOADING), (S.QUEUED, S.STARTING), (S.QUEUED, S.RUNNING), (S.QUEUED, S.COMPLETED),
    (S.QUEUED, S.FAILED), (S.QUEUED, S.CANCELLED),
    (S.UPLOADING, S.QUEUED), (S.UPLOADING, S.STARTING), (S.UPLOADING, S.RUNNING), (S.UPLOADING, S.COMPLETED),
    (S.UPLOADING, S.FAILED), (S.UPLOADING, S.CANCELLED),
    (S.STARTING, S.QUEUED), (S.STARTING, S.RUNNING), (S.STARTING, S.COMPLETED), (S.STARTING, S.FAILED),
    (S.STARTING, S.CANCELLED),
    (S.RUNNING, S.QUEUED), (S.RUNNING, S.COMPLETED), (S.RUNNING, S.FAILED), (S.RUNNING, S.CANCELLED),
}  # fmt: skip


@pytest.mark.parametrize(("current", "target"), list(itertools.product(JobStatus, JobStatus)))
def test_transition_table(current: JobStatus, target: JobStatus) -> None:
    assert is_legal_transition(current, target) == ((current, target) in EXPECTED_LEGAL)


def test_terminal_states_are_final() -> None:
    for state in TERMINAL_STATES:
        assert LEGAL_TRANSITIONS[state] == frozenset()
        assert state.is_terminal
        assert not state.is_active


def test_every_state_can_end() -> None:
    for state in set(JobStatus) - TERMINAL_STATES:
        assert {S.FAILED, S.CANCELLED} <= LEGAL_TRANSITIONS[state]


def test_nothing_goes_back_to_pending_approval() -> None:
    assert all(S.PENDING_APPROVAL not in targets for targets in LEGAL_TRANSITIONS.values())


def test_active_states() -> None:
    assert {S.UPLOADING, S.STARTING, S.RUNNING} == ACTIVE_STATES


def test_parse_status() -> None:
    assert parse_status(" Running ") is S.RUNNING
    with pytest.raises(ValueError, match="nonsense"):
        parse_status("nonsense")
