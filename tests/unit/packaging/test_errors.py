"""The packaging error tree: one root, stable codes, docstring messages."""

from __future__ import annotations

import re

from cloudtuner.packaging import errors


def _all_error_classes() -> list[type[errors.PackagingError]]:
    found: list[type[errors.PackagingError]] = []
    pending: list[type[errors.PackagingError]] = [errors.PackagingError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


def test_every_error_has_a_unique_snake_case_code_and_a_docstring_message() -> None:
    classes = _all_error_classes()
    codes = [cls.code for cls in classes]
    assert len(codes) == len(set(codes))
    for cls in classes:
        assert re.fullmatch(r"[a-z]+(_[a-z]+)*", cls.code), cls
        message = str(cls())
        assert message
        assert message == cls.default_message()
        assert "\n" not in message


def test_codes_the_api_relies_on() -> None:
    assert errors.DatasetNotFoundError.code == "dataset_not_found"
    assert errors.UploadTooLargeError.code == "upload_too_large"


def test_a_given_message_replaces_the_default() -> None:
    error = errors.DatasetNotFoundError("Dataset 'x': /nope does not exist.")
    assert str(error) == "Dataset 'x': /nope does not exist."
    assert error.message == str(error)
    assert isinstance(error, errors.PackagingError)
    assert str(errors.DatasetNotFoundError()) == "A local dataset folder does not exist."
