"""Scan a job's local datasets: counts, sizes, exclusions and a fingerprint, before packaging.

A scan walks every folder to package once (``walk.py``), reads no file contents, and keeps
only counters, a capped list of exclusions and a running hash: its memory does not grow with
the size of the datasets. It is what the upload summary, the limit check and the archive
builder start from.

The **fingerprint** is a sha256 over the archive layout and, for every file in archive order,
its archive name, size and modification time. It is cheap (no contents read) and serves two
purposes: the archive builder walks the folders again and refuses to finish when the
fingerprint differs (the files changed after the summary was shown), and a caller can use it
to find an archive built earlier from the same files without building again. It is not a
content hash: the sha256 of the archive itself (``archive.py``) is.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cloudtuner.packaging import layout, rules, sizes, walk
from cloudtuner.schemas.uploads import ExcludedPath

ARCHIVE_FORMAT_VERSION = "cloudtuner-datasets-zip/1"
"""Changes whenever the archive layout or encoding changes, so old fingerprints stop matching."""

DEFAULT_MAX_LISTED_EXCLUSIONS = 100
"""How many exclusions each dataset lists in the summary; the count covers all of them."""


class FolderFingerprint:
    """Running sha256 over the (archive name, size, mtime) of each file of one folder, in order."""

    def __init__(self, archive_folder: str) -> None:
        self._digest = hashlib.sha256(f"{ARCHIVE_FORMAT_VERSION}\n{archive_folder}\n".encode())

    def add(self, member_name: str, size_bytes: int, mtime_ns: int) -> None:
        """Add one file; ``member_name`` is its full name inside the archive."""
        self._digest.update(f"{member_name}\x00{size_bytes}\x00{mtime_ns}\n".encode())

    def hexdigest(self) -> str:
        """Return the fingerprint so far as 64 hex digits."""
        return self._digest.hexdigest()


@dataclass(frozen=True, slots=True)
class FolderScan:
    """What one folder to package holds, as found by the scan."""

    folder: layout.SourceFolder
    file_count: int
    total_bytes: int
    image_count: int
    images_by_extension: Mapping[str, int]
    captioned_images: int
    excluded: tuple[ExcludedPath, ...]
    """The first exclusions found, up to the cap given to ``scan_datasets``."""
    excluded_count: int
    entries_bytes: int
    """Sum of ``sizes.estimate_entry_bytes`` over the files: their share of the archive."""
    fingerprint: str


@dataclass(frozen=True, slots=True)
class PackageScan:
    """The scan of all local datasets of a job: the input of the summary and of the archive."""

    layout: layout.DatasetLayout
    folders: tuple[FolderScan, ...]
    fingerprint: str
    """sha256 over the layout and every folder's fingerprint; see the module docstring."""

    @property
    def file_count(self) -> int:
        """Number of files that will be packaged."""
        return sum(folder.file_count for folder in self.folders)

    @property
    def total_bytes(self) -> int:
        """Sum of the sizes of the files that will be packaged."""
        return sum(folder.total_bytes for folder in self.folders)

    @property
    def estimated_archive_bytes(self) -> int:
        """Upper bound on the archive size (exact when no file is compressed)."""
        entries = sum(folder.entries_bytes for folder in self.folders)
        return sizes.estimate_archive_bytes(self.file_count, entries)

    def find_folder(self, archive_folder: str) -> FolderScan | None:
        """Return the scan of the folder stored under ``archive_folder``, or None."""
        for folder in self.folders:
            if folder.folder.archive_folder == archive_folder:
                return folder
        return None


def scan_datasets(
    dataloader_config: Sequence[Mapping[str, Any]],
    *,
    base_dir: str | None = None,
    max_listed_exclusions: int = DEFAULT_MAX_LISTED_EXCLUSIONS,
) -> PackageScan:
    """Scan the enabled ``type: "local"`` datasets of a dataloader config, reading no contents.

    Relative ``instance_data_dir`` paths are taken relative to ``base_dir`` (default: the
    current working directory). Datasets that share a folder are scanned once. A config with
    no local datasets gives an empty scan.

    Raises:
        InvalidDatasetConfigError: see ``layout.plan_dataset_layout``.
        DatasetNotFoundError: a dataset folder does not exist (the message names id and path).
        DatasetNotADirectoryError: a dataset path is not a folder.
        DatasetUnreadableError: a dataset folder cannot be listed.
    """
    planned = layout.plan_dataset_layout(dataloader_config, base_dir=base_dir)
    folders = tuple(scan_folder(folder, max_listed_exclusions=max_listed_exclusions) for folder in planned.folders)
    return PackageScan(layout=planned, folders=folders, fingerprint=package_fingerprint(folders))


def scan_folder(folder: layout.SourceFolder, *, max_listed_exclusions: int) -> FolderScan:
    """Scan one folder to package.

    Raises:
        DatasetNotFoundError, DatasetNotADirectoryError, DatasetUnreadableError: as
            ``walk.walk_dataset``.
    """
    fingerprint = FolderFingerprint(folder.archive_folder)
    file_count = total_bytes = image_count = captioned_images = entries_bytes = excluded_count = 0
    images_by_extension: dict[str, int] = {}
    excluded: list[ExcludedPath] = []
    for item in walk.walk_dataset(folder.source_dir, dataset_label=dataset_label(folder)):
        if isinstance(item, walk.WalkedExclusion):
            excluded_count += 1
            if len(excluded) < max_listed_exclusions:
                excluded.append(
                    ExcludedPath(
                        path=rules.printable_path(item.relative_parts),
                        reason=item.reason,
                        detail=item.detail,
                        is_directory=item.is_directory,
                    )
                )
            continue
        name = layout.member_name(folder.archive_folder, item.relative_parts)
        fingerprint.add(name, item.size_bytes, item.mtime_ns)
        file_count += 1
        total_bytes += item.size_bytes
        captioned_images += item.captioned_images
        if item.image_extension is not None:
            image_count += 1
            images_by_extension[item.image_extension] = images_by_extension.get(item.image_extension, 0) + 1
        entries_bytes += sizes.estimate_entry_bytes(
            len(name.encode("utf-8")),
            item.size_bytes,
            compressed=rules.should_compress(item.relative_parts[-1]),
        )
    return FolderScan(
        folder=folder,
        file_count=file_count,
        total_bytes=total_bytes,
        image_count=image_count,
        images_by_extension=dict(sorted(images_by_extension.items())),
        captioned_images=captioned_images,
        excluded=tuple(excluded),
        excluded_count=excluded_count,
        entries_bytes=entries_bytes,
        fingerprint=fingerprint.hexdigest(),
    )


def package_fingerprint(folders: Sequence[FolderScan]) -> str:
    """Return the fingerprint of a whole package from its folders' fingerprints, in order."""
    digest = hashlib.sha256(f"{ARCHIVE_FORMAT_VERSION}\n".encode())
    for folder in folders:
        digest.update(f"{folder.folder.archive_folder}\t{folder.fingerprint}\n".encode())
    return digest.hexdigest()


def dataset_label(folder: layout.SourceFolder) -> str:
    """Return how messages name the dataset(s) of a folder: ``dataset 'a'`` or ``datasets 'a', 'b'``."""
    ids = ", ".join(repr(dataset_id) for dataset_id in folder.dataset_ids)
    return f"dataset {ids}" if len(folder.dataset_ids) == 1 else f"datasets {ids}"
