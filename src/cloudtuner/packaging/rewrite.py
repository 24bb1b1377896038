"""Point a dataloader config at the extracted archive on the trainer's side (pure, no I/O).

With the archive extracted into ``<root>`` (``/src/datasets``, a worker's staging folder):

* ``instance_data_dir`` of a packaged dataset → ``<root>/datasets/<name>``;
* ``cache_dir_vae`` of any local dataset → ``<root>/cache/<name>/vae``;
* ``cache_dir`` of any local dataset (text and image embedding caches) → ``<root>/cache/<name>``.

``<name>`` comes from ``layout.plan_dataset_layout``, the same plan the archive was built
from, so the paths match its folders. Every cache path gets a folder of its own, even when the
original config shared one between datasets. Entries that are not ``type: "local"``, or are
disabled, are returned unchanged; the input is never modified.
"""

from __future__ import annotations

import copy
import posixpath
from collections.abc import Mapping, Sequence
from typing import Any

from cloudtuner.packaging import errors, layout

VAE_CACHE_SUBFOLDER = "vae"
"""Sub-folder of a dataset's cache folder that replaces its ``cache_dir_vae``."""


def rewrite_dataloader_config(
    dataloader_config: Sequence[Mapping[str, Any]],
    extract_root: str,
    *,
    base_dir: str | None = None,
) -> list[dict[str, Any]]:
    """Return a copy of the dataloader config whose local paths point into ``extract_root``.

    ``extract_root`` is a POSIX path on the trainer (the machine that extracts the archive);
    ``base_dir`` must be the one the scan used, when the config has relative paths, so that
    datasets sharing a folder are recognised the same way.

    Raises:
        InvalidExtractRootError: ``extract_root`` is empty or contains a NUL character.
        InvalidDatasetConfigError: see ``layout.plan_dataset_layout``.
    """
    root = normalise_extract_root(extract_root)
    planned = layout.plan_dataset_layout(dataloader_config, base_dir=base_dir)
    rewritten: list[dict[str, Any]] = []
    for index, entry in enumerate(dataloader_config):
        copied = copy.deepcopy(dict(entry))
        dataset = planned.find_dataset(index)
        if dataset is not None:
            _rewrite_entry(copied, dataset, root)
        rewritten.append(copied)
    return rewritten


def normalise_extract_root(extract_root: str) -> str:
    """Return the extraction root as a normalised POSIX path without a trailing slash.

    Raises:
        InvalidExtractRootError: the root is empty or contains a NUL character.
    """
    if not isinstance(extract_root, str) or not extract_root.strip() or "\x00" in extract_root:
        raise errors.InvalidExtractRootError(
            f"The extraction folder {extract_root!r} is not usable; give a path such as /src/datasets."
        )
    return posixpath.normpath(extract_root.replace("\\", "/"))


def _rewrite_entry(entry: dict[str, Any], dataset: layout.LocalDataset, root: str) -> None:
    if dataset.archive_folder is not None:
        entry["instance_data_dir"] = posixpath.join(root, dataset.archive_folder)
    cache_root = posixpath.join(root, dataset.cache_folder)
    if isinstance(entry.get("cache_dir_vae"), str):
        entry["cache_dir_vae"] = posixpath.join(cache_root, VAE_CACHE_SUBFOLDER)
    if isinstance(entry.get("cache_dir"), str):
        entry["cache_dir"] = cache_root
