"""Ids, progress, errors, permissions, fingerprints."""

from __future__ import annotations

import pytest

from cloudtuner.core import errors
from cloudtuner.core.ids import is_sortable_id, new_sortable_id
from cloudtuner.core.permissions import LOCAL_PRINCIPAL, Permission, Principal
from cloudtuner.core.progress import JobProgress
from cloudtuner.services.fingerprints import canonical_json, fingerprint


def test_ids_sort_by_time_and_are_unique() -> None:
    ids = [new_sortable_id(now_ms=1_700_000_000_000 + i) for i in range(1000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == 1000
    assert all(is_sortable_id(i) and len(i) == 26 for i in ids)
    same_ms = {new_sortable_id(now_ms=5) for _ in range(1000)}
    assert len(same_ms) == 1000


@pytest.mark.parametrize(
    "value", ["", "x" * 26, "u" * 26, "01m821nzaqybwa8nwxmn73v3s", "01M821NZAQYBWA8NWXMN73V3S3", "../etc/passwd"]
)
def test_is_sortable_id_rejects(value: str) -> None:
    assert not is_sortable_id(value)


def test_progress_percent_and_round_trip() -> None:
    progress = JobProgress(stage="training", step=50, total_steps=200, loss=0.12)
    assert progress.percent == 25.0
    assert JobProgress.from_dict(progress.to_dict()) == progress
    assert JobProgress(step=3).percent is None
    assert JobProgress(step=300, total_steps=200).percent == 100.0
    assert JobProgress.from_dict(None) is None
    assert JobProgress.from_dict({"step": 1, "unknown": 2}) == JobProgress(step=1)


def test_error_messages_come_from_docstrings_and_codes_are_unique() -> None:
    assert errors.JobNotFoundError().message == "No job has that id."
    assert errors.JobNotFoundError("custom").message == "custom"
    classes = [errors.CloudtunerError, *_subclasses(errors.CloudtunerError)]
    codes = [cls.code for cls in classes]
    assert len(codes) == len(set(codes)), "every error class has its own code"
    for cls in classes:
        assert cls.code.replace("_", "").isalpha() and cls.code == cls.code.lower()
        assert cls.__doc__, f"{cls.__name__} needs a docstring: it is the default message"


def _subclasses(cls: type) -> list[type[errors.CloudtunerError]]:
    found = []
    for sub in cls.__subclasses__():
        found.append(sub)
        found.extend(_subclasses(sub))
    return found


def test_principal_permissions() -> None:
    viewer = Principal(id="u1", name="viewer", permissions=frozenset({Permission.JOB_VIEW_OWN}))
    assert viewer.can(Permission.JOB_VIEW_OWN)
    assert not viewer.can(Permission.JOB_SUBMIT)
    assert viewer.can_any(Permission.JOB_SUBMIT, Permission.JOB_VIEW_OWN)
    assert all(LOCAL_PRINCIPAL.can(p) for p in Permission)


def test_seed_scopes_are_permissions() -> None:
    for scope in ("job.submit", "job.view.own", "job.cancel.own", "job.view.all"):
        assert Permission(scope).value == scope


def test_fingerprint_ignores_key_order() -> None:
    assert fingerprint({"a": 1, "b": [1, 2]}) == fingerprint({"b": [1, 2], "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})
    assert canonical_json({"b": 1, "a": "é"}) == '{"a":"é","b":1}'
