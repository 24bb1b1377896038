"""Wire models of the upload summary: what a job would upload, shown before consent.

The summary is computed from a scan of the job's local datasets (``cloudtuner.packaging``)
before any archive is built, and is what the pre-submit dialog and the 428 "consent
required" reply show. Sizes are in bytes; paths inside a dataset are relative and use ``/``.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, Field


class ExclusionReason(StrEnum):
    """Why a file or folder of a dataset is left out of the upload."""

    HIDDEN = "hidden"
    """A hidden file or folder (its name starts with a dot)."""
    VERSION_CONTROL = "version_control"
    """Version-control metadata such as ``.git``."""
    ENVIRONMENT_FILE = "environment_file"
    """An environment file such as ``.env`` or ``.env.production``; these hold secrets."""
    CREDENTIALS = "credentials"
    """A credentials file or folder such as ``credentials``, ``.netrc``, ``.aws`` or ``.ssh``."""
    PRIVATE_KEY = "private_key"
    """A key or certificate store such as ``id_rsa``, ``*.pem``, ``*.key`` or ``*.p12``."""
    SECRET_NAME = "secret_name"  # noqa: S105 - a reason code, not a password
    """A file whose name says it holds a secret, password, token or API key."""
    SYMLINK_OUTSIDE_DATASET = "symlink_outside_dataset"
    """A symbolic link that resolves to a place outside the dataset folder."""
    SYMLINK_LOOP = "symlink_loop"
    """A symbolic link that loops, or leads to a folder that is already being packaged."""
    BROKEN_SYMLINK = "broken_symlink"
    """A symbolic link whose target does not exist."""
    NOT_A_REGULAR_FILE = "not_a_regular_file"
    """A device, socket or named pipe."""
    UNSAFE_NAME = "unsafe_name"
    """A name that cannot be stored safely in a zip archive (not UTF-8, control characters, ``\\``)."""
    UNREADABLE = "unreadable"
    """A file or folder this process is not allowed to read."""


class ExcludedPath(BaseModel):
    """One file or folder left out of a dataset's upload, and why."""

    path: str = Field(description="Path relative to the dataset folder, with '/' separators.")
    reason: ExclusionReason
    detail: str = Field(description="One sentence for a person, e.g. 'environment files hold secrets'.")
    is_directory: bool = Field(
        default=False, description="True when a whole folder was left out; its content is not listed."
    )


class DatasetUploadSummary(BaseModel):
    """What one local dataset contributes to the upload."""

    dataset_id: str
    path: str = Field(description="The dataset folder on this machine (instance_data_dir, made absolute).")
    archive_folder: str = Field(description="The folder that holds this dataset inside the archive.")
    same_files_as: str | None = Field(
        default=None,
        description=(
            "The id of an earlier dataset with the same folder; the files are packaged once and"
            " shared, so this dataset adds nothing to the totals."
        ),
    )
    caption_strategy: str | None = None
    file_count: int = Field(ge=0)
    total_bytes: int = Field(ge=0, description="Sum of the sizes of the files that will be uploaded.")
    image_count: int = Field(ge=0)
    images_by_extension: dict[str, int] = Field(
        default_factory=dict, description="Image counts by lower-case extension without the dot."
    )
    captions_found: int | None = Field(
        default=None,
        description=(
            "How many images have a caption .txt file next to them; null unless the caption strategy is 'textfile'."
        ),
    )
    excluded: list[ExcludedPath] = Field(
        default_factory=list, description="Excluded files and folders, capped; see excluded_count."
    )
    excluded_count: int = Field(ge=0, description="How many files and folders were excluded in all.")


class UploadSummary(BaseModel):
    """What a job would upload: per dataset, in total, and against the provider's limit."""

    datasets: list[DatasetUploadSummary] = Field(default_factory=list)
    file_count: int = Field(ge=0)
    total_bytes: int = Field(ge=0)
    image_count: int = Field(ge=0)
    captions_found: int = Field(ge=0, description="Sum over the datasets that use caption files.")
    excluded_count: int = Field(ge=0)
    estimated_archive_bytes: int = Field(
        ge=0,
        description=(
            "An upper bound on the size of the zip archive (exact when no file is compressed);"
            " this is the figure compared with the upload limit."
        ),
    )
    upload_limit_bytes: int | None = Field(
        default=None, description="The provider's upload limit, or null when it has none."
    )
    fits_upload_limit: bool = True
    bytes_over_limit: int = Field(default=0, ge=0, description="How far the archive exceeds the limit.")
    fingerprint: str = Field(
        description=(
            "sha256 over the archive names, sizes and modification times of the files; equal"
            " fingerprints mean the same files, unchanged since the scan."
        )
    )
