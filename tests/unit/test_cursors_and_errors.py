"""Cursors and the error-to-status mapping."""

from __future__ import annotations

import pytest

from cloudtuner.api.errors import status_for
from cloudtuner.core import errors
from cloudtuner.core.ids import new_sortable_id
from cloudtuner.services.jobs import decode_cursor, encode_cursor


def test_cursor_round_trip() -> None:
    job_id = new_sortable_id()
    assert decode_cursor(encode_cursor(job_id)) == job_id


@pytest.mark.parametrize("cursor", ["", "!!!", "bm90LWFuLWlk", encode_cursor("x" * 26)])
def test_bad_cursor(cursor: str) -> None:
    with pytest.raises(errors.InvalidCursorError):
        decode_cursor(cursor)


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (errors.InvalidJSONError(), 400),
        (errors.UnknownProviderError(), 400),
        (errors.MissingDataloaderError(), 400),
        (errors.InvalidCursorError(), 400),
        (errors.AuthenticationRequiredError(), 401),
        (errors.PermissionDeniedError(), 403),
        (errors.JobNotFoundError(), 404),
        (errors.ConfigNotFoundError(), 404),
        (errors.IdempotencyKeyConflictError(), 409),
        (errors.JobAlreadyFinishedError(), 409),
        (errors.JobNotFinishedError(), 409),
        (errors.ProviderUnavailableError(), 503),
        (errors.ProviderRejectedError(), 502),
        (errors.CloudtunerError(), 500),
    ],
)
def test_error_statuses(error: errors.CloudtunerError, status: int) -> None:
    assert status_for(error) == status
