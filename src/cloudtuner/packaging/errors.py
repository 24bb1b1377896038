"""Errors raised by ``cloudtuner.packaging``.

Every error is part of the project's error tree (an ``InvalidRequestError``: the datasets are the
user's to fix), with a stable snake_case ``code`` and a default message, which is its docstring.
Raise one with a more specific message (naming the dataset and path) where one is known.
"""

from __future__ import annotations

import inspect

from cloudtuner.core.errors import InvalidRequestError


class PackagingError(InvalidRequestError):
    """The job's datasets could not be packaged for upload."""

    code = "packaging_error"

    @classmethod
    def default_message(cls) -> str:
        """Return the class docstring as one line: the message used when none is given."""
        return " ".join(inspect.cleandoc(cls.__doc__ or "").split())


class InvalidDatasetConfigError(PackagingError):
    """The dataloader configuration cannot be packaged: a local dataset lacks an id or a folder."""

    code = "invalid_dataset_config"


class DatasetNotFoundError(PackagingError):
    """A local dataset folder does not exist."""

    code = "dataset_not_found"


class DatasetNotADirectoryError(PackagingError):
    """A local dataset path is not a folder."""

    code = "dataset_not_a_directory"


class DatasetUnreadableError(PackagingError):
    """A local dataset folder or one of its files cannot be read."""

    code = "dataset_unreadable"


class DatasetChangedError(PackagingError):
    """A dataset changed after its upload summary was made; review the summary again."""

    code = "dataset_changed"


class NothingToPackageError(PackagingError):
    """The job has no enabled local datasets, so there is nothing to package."""

    code = "nothing_to_package"


class UploadTooLargeError(PackagingError):
    """The packaged datasets are larger than the provider's upload limit."""

    code = "upload_too_large"


class InvalidArchivePathError(PackagingError):
    """The archive cannot be written there: its folder is missing or lies inside a dataset."""

    code = "invalid_archive_path"


class ArchiveWriteError(PackagingError):
    """The archive could not be written to disk."""

    code = "archive_write_failed"


class UnsafeArchiveNameError(PackagingError):
    """A name in the archive would not be a plain relative path."""

    code = "unsafe_archive_name"


class InvalidExtractRootError(PackagingError):
    """The folder where the archive will be extracted is not a usable path."""

    code = "invalid_extract_root"
