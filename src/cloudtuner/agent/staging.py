"""A job's staging folder on the worker: unpacked datasets, the trainer's config files, its outputs.

The server sends the dataloader config with dataset paths under an extract root (``/datasets``);
they are moved here under ``<staging>/datasets`` by a plain prefix replacement, the same rule the
server's packaging applies (``cloudtuner.packaging.rewrite``), mirrored without importing it.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

PATH_KEYS = ("instance_data_dir", "cache_dir_vae", "cache_dir_text", "cache_dir", "csv_file", "jsonl_file")


def move_root(value: Any, old_root: str, new_root: str) -> Any:
    """Return ``value`` with a leading ``old_root`` path replaced by ``new_root`` (other values unchanged)."""
    if not isinstance(value, str):
        return value
    old = old_root.rstrip("/")
    if value == old:
        return new_root
    if value.startswith(old + "/"):
        return new_root.rstrip("/") + value[len(old) :]
    return value


def rewrite_dataloader(dataloader: list[dict[str, Any]], old_root: str, new_root: str) -> list[dict[str, Any]]:
    """Return the dataloader config with every path under ``old_root`` moved to ``new_root``."""
    return [{key: move_root(value, old_root, new_root) for key, value in entry.items()} for entry in dataloader]


def unpack(archive: Path, destination: Path) -> None:
    """Unpack a dataset zip into ``destination``, refusing members that would land outside it.

    Raises:
        ValueError: a member's path escapes the destination.
    """
    destination.mkdir(parents=True, exist_ok=True)
    root = destination.resolve()
    with zipfile.ZipFile(archive) as bundle:
        for member in bundle.infolist():
            target = (root / member.filename).resolve()
            if not target.is_relative_to(root):
                raise ValueError(f"archive member {member.filename!r} escapes the staging folder")
        bundle.extractall(root)  # every member was checked above


def write_trainer_files(
    staging: Path, config: dict[str, Any], dataloader: list[dict[str, Any]]
) -> tuple[Path, Path, Path]:
    """Write ``config.json`` and ``multidatabackend.json``; return (config, backend, output dir).

    The config's ``--output_dir`` and ``--data_backend_config`` point into the staging folder.
    """
    output = staging / "output"
    output.mkdir(parents=True, exist_ok=True)
    backend = staging / "multidatabackend.json"
    backend.write_text(json.dumps(dataloader, indent=2))
    written = {**config, "--output_dir": str(output), "--data_backend_config": str(backend)}
    config_path = staging / "config.json"
    config_path.write_text(json.dumps(written, indent=2))
    return config_path, backend, output
