"""Where each local dataset goes inside the archive and on the trainer: pure planning, no I/O.

The archive holds one top-level ``datasets/`` folder with one sub-folder per local dataset
folder, named after the dataset id (sanitised, and made unique case-insensitively, so two
datasets with the same folder name never collide)::

    datasets/training-images/cat_01.jpg
    datasets/training-images/cat_01.txt
    datasets/training-images-2/...

Datasets that point at the same folder (the usual multi-resolution set-up: one folder, several
resolutions) share one archive folder, so their files are packaged once. Caches are not
uploaded; each local dataset gets its own ``cache/<name>`` folder on the trainer side (see
``rewrite.py``).
"""

from __future__ import annotations

import os
import posixpath
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cloudtuner.packaging import errors, rules

ARCHIVE_DATASETS_FOLDER = "datasets"
"""Top-level folder of the archive that holds the datasets."""

CACHE_FOLDER = "cache"
"""Folder, next to ``datasets/`` on the trainer, that holds one cache folder per dataset."""

CACHE_DATASET_TYPES = frozenset({"text_embeds", "image_embeds", "conditioning_image_embeds"})
"""Dataset types that are caches: their paths are rewritten, nothing of theirs is uploaded."""

MAX_FOLDER_NAME_LENGTH = 64
"""Longest dataset folder name (before a de-duplicating suffix) inside the archive."""

MAX_MEMBER_NAME_BYTES = 0xFFFF
"""The zip format stores a name's length in 16 bits."""

_UNSAFE_FOLDER_CHARACTERS = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True, slots=True)
class LocalDataset:
    """One enabled ``type: "local"`` entry of the dataloader config and where it goes."""

    index: int
    """Position of the entry in the dataloader config."""
    dataset_id: str
    dataset_type: str
    caption_strategy: str | None
    source_dir: str | None
    """The dataset folder, absolute and normalised; None for cache datasets (nothing uploaded)."""
    archive_folder: str | None
    """``datasets/<name>`` inside the archive; None for cache datasets."""
    cache_folder: str
    """``cache/<name>``, relative to the extraction root."""
    same_files_as: str | None
    """Id of an earlier dataset with the same source folder, whose archive folder is shared."""


@dataclass(frozen=True, slots=True)
class SourceFolder:
    """One folder to package, and the ids of the datasets that use it."""

    source_dir: str
    archive_folder: str
    dataset_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DatasetLayout:
    """The plan for a job: its local datasets and the distinct folders to package."""

    datasets: tuple[LocalDataset, ...]
    folders: tuple[SourceFolder, ...]

    def find_dataset(self, index: int) -> LocalDataset | None:
        """Return the local dataset at a position of the dataloader config, or None."""
        for dataset in self.datasets:
            if dataset.index == index:
                return dataset
        return None


def is_enabled_local(entry: Mapping[str, Any]) -> bool:
    """Return True for a dataset entry with ``type: "local"`` that is not disabled."""
    if entry.get("type") != "local":
        return False
    return not (entry.get("disabled") is True or entry.get("disable") is True)


def is_cache_dataset(entry: Mapping[str, Any]) -> bool:
    """Return True for text or image embedding cache datasets (nothing of theirs is uploaded)."""
    return entry.get("dataset_type") in CACHE_DATASET_TYPES


def sanitize_folder_name(dataset_id: str) -> str:
    """Return a folder name for a dataset id: ASCII letters, digits, ``.``, ``_`` and ``-`` only.

    Other characters become ``_``; leading and trailing dots, dashes and underscores are
    removed (no hidden folders); the result is at most ``MAX_FOLDER_NAME_LENGTH`` characters and
    is ``"dataset"`` when nothing usable is left.
    """
    normalised = unicodedata.normalize("NFKC", dataset_id)
    name = _UNSAFE_FOLDER_CHARACTERS.sub("_", normalised).strip("._-")
    name = name[:MAX_FOLDER_NAME_LENGTH].rstrip("._-")
    return name or "dataset"


def allocate_unique_names(candidates: Iterable[str]) -> list[str]:
    """Return the candidates made unique, in order, ignoring case: ``a``, ``A`` → ``a``, ``A-2``."""
    taken: set[str] = set()
    unique: list[str] = []
    for candidate in candidates:
        name = candidate
        suffix = 2
        while name.lower() in taken:
            name = f"{candidate}-{suffix}"
            suffix += 1
        taken.add(name.lower())
        unique.append(name)
    return unique


def member_name(archive_folder: str, relative_parts: Sequence[str]) -> str:
    """Return the archive name of a file: ``<archive folder>/<relative parts joined by />``.

    Raises:
        UnsafeArchiveNameError: a part is not a plain name, or the result would not be a
            relative, normalised path without ``..``.
    """
    for part in relative_parts:
        detail = rules.unsafe_name_detail(part)
        if detail is not None:
            raise errors.UnsafeArchiveNameError(
                f"Refusing to store {rules.printable_path(relative_parts)!r} in the archive: {detail}."
            )
    name = "/".join((archive_folder, *relative_parts))
    if not is_safe_member_name(name):
        raise errors.UnsafeArchiveNameError(
            f"Refusing to store {rules.printable_path([name])!r}: not a plain relative path."
        )
    return name


def is_safe_member_name(name: str) -> bool:
    """Return True when a zip member name is relative, normalised, UTF-8, and has no ``..``."""
    if not name or name.startswith("/") or "\\" in name or "\x00" in name:
        return False
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    if len(encoded) > MAX_MEMBER_NAME_BYTES or posixpath.normpath(name) != name:
        return False
    parts = name.split("/")
    return all(part not in {"", ".", ".."} for part in parts) and ":" not in parts[0]


def normalise_source_dir(raw_path: str, *, base_dir: str | None = None) -> str:
    """Return an ``instance_data_dir`` made absolute and normalised, without touching the disk.

    ``~`` is expanded; a relative path is taken relative to ``base_dir`` (or the current
    working directory when ``base_dir`` is None). Symbolic links are not resolved.
    """
    expanded = os.path.expanduser(raw_path)
    if not os.path.isabs(expanded):
        expanded = os.path.join(base_dir if base_dir is not None else os.getcwd(), expanded)
    return os.path.normpath(expanded)


def plan_dataset_layout(
    dataloader_config: Sequence[Mapping[str, Any]], *, base_dir: str | None = None
) -> DatasetLayout:
    """Plan where each enabled local dataset goes in the archive and in the cache folders.

    Entries of other types (``aws``, ``huggingface``, ...) and disabled entries are ignored.
    Image, video and conditioning datasets are packaged; ``text_embeds``, ``image_embeds`` and
    ``conditioning_image_embeds`` datasets only get a cache folder. The result depends only on
    the config (and ``base_dir`` for relative paths), so scanning and path rewriting agree.

    Raises:
        InvalidDatasetConfigError: the config is not a list of objects, a local dataset has no
            usable ``id``, two local datasets share an id, or a packaged dataset has no
            ``instance_data_dir``.
    """
    entries = _local_entries(dataloader_config)
    packaged = [(index, entry) for index, entry in entries if not is_cache_dataset(entry)]

    folder_of_source: dict[str, int] = {}
    folder_sources: list[str] = []
    folder_candidates: list[str] = []
    folder_ids: list[list[str]] = []
    source_of_index: dict[int, str] = {}
    for index, entry in packaged:
        source_dir = _source_dir_of(entry, base_dir=base_dir)
        source_of_index[index] = source_dir
        if source_dir not in folder_of_source:
            folder_of_source[source_dir] = len(folder_sources)
            folder_sources.append(source_dir)
            folder_candidates.append(sanitize_folder_name(entry["id"]))
            folder_ids.append([])
        folder_ids[folder_of_source[source_dir]].append(entry["id"])
    folder_names = allocate_unique_names(folder_candidates)
    archive_folders = [f"{ARCHIVE_DATASETS_FOLDER}/{name}" for name in folder_names]

    # Packaged datasets first, so their cache folder names do not depend on the cache datasets.
    ordered = packaged + [(index, entry) for index, entry in entries if is_cache_dataset(entry)]
    cache_names = allocate_unique_names(sanitize_folder_name(entry["id"]) for _, entry in ordered)
    planned: list[LocalDataset] = []
    for (index, entry), cache_name in zip(ordered, cache_names, strict=True):
        dataset_source = source_of_index.get(index)
        archive_folder: str | None = None
        same_files_as: str | None = None
        if dataset_source is not None:
            folder_index = folder_of_source[dataset_source]
            archive_folder = archive_folders[folder_index]
            first_id = folder_ids[folder_index][0]
            same_files_as = first_id if first_id != entry["id"] else None
        caption_strategy = entry.get("caption_strategy")
        planned.append(
            LocalDataset(
                index=index,
                dataset_id=entry["id"],
                dataset_type=str(entry.get("dataset_type") or "image"),
                caption_strategy=caption_strategy if isinstance(caption_strategy, str) else None,
                source_dir=dataset_source,
                archive_folder=archive_folder,
                cache_folder=f"{CACHE_FOLDER}/{cache_name}",
                same_files_as=same_files_as,
            )
        )
    planned.sort(key=lambda dataset: dataset.index)
    folders = tuple(
        SourceFolder(source_dir=source, archive_folder=folder, dataset_ids=tuple(ids))
        for source, folder, ids in zip(folder_sources, archive_folders, folder_ids, strict=True)
    )
    return DatasetLayout(datasets=tuple(planned), folders=folders)


def _local_entries(dataloader_config: Sequence[Mapping[str, Any]]) -> list[tuple[int, Mapping[str, Any]]]:
    if isinstance(dataloader_config, str | bytes | Mapping) or not isinstance(dataloader_config, Sequence):
        raise errors.InvalidDatasetConfigError("The dataloader config must be a list of dataset objects.")
    local: list[tuple[int, Mapping[str, Any]]] = []
    seen_ids: set[str] = set()
    for index, entry in enumerate(dataloader_config):
        if not isinstance(entry, Mapping):
            raise errors.InvalidDatasetConfigError(f"Dataset #{index + 1} of the dataloader config is not an object.")
        if not is_enabled_local(entry):
            continue
        dataset_id = entry.get("id")
        if not isinstance(dataset_id, str) or not dataset_id.strip():
            raise errors.InvalidDatasetConfigError(
                f'Dataset #{index + 1} has type "local" but no "id"; give every dataset a unique id.'
            )
        if dataset_id in seen_ids:
            raise errors.InvalidDatasetConfigError(
                f"Two local datasets have the id {dataset_id!r}; dataset ids must be unique."
            )
        seen_ids.add(dataset_id)
        local.append((index, entry))
    return local


def _source_dir_of(entry: Mapping[str, Any], *, base_dir: str | None) -> str:
    raw_path = entry.get("instance_data_dir")
    if not isinstance(raw_path, str) or not raw_path.strip():
        raise errors.InvalidDatasetConfigError(
            f'Dataset {entry["id"]!r} has type "local" but no "instance_data_dir"; set it to the'
            " folder that holds the images."
        )
    if "\x00" in raw_path:
        raise errors.InvalidDatasetConfigError(f"Dataset {entry['id']!r}: instance_data_dir contains a NUL character.")
    return normalise_source_dir(raw_path, base_dir=base_dir)
