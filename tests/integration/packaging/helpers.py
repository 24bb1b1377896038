"""Building small dataset folders on disk for the packaging tests."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def make_files(root: Path, files: Mapping[str, bytes | str]) -> Path:
    """Create ``files`` (relative path → content) under ``root``; return ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
    return root


def local_dataset(dataset_id: str, folder: Path, **extra: Any) -> dict[str, Any]:
    """Return a dataloader entry for a local image dataset with caption files."""
    return {
        "id": dataset_id,
        "type": "local",
        "dataset_type": "image",
        "instance_data_dir": str(folder),
        "caption_strategy": "textfile",
        "resolution": 1024,
        **extra,
    }


def create_with_raw_name(folder: Path, raw_name: bytes, content: bytes = b"x") -> None:
    """Create a file whose name is given as bytes (possibly not valid UTF-8)."""
    descriptor = os.open(os.path.join(os.fsencode(folder), raw_name), os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.write(descriptor, content)
    finally:
        os.close(descriptor)


def run_with_deadline(function: Callable[[], T], seconds: float = 20.0) -> T:
    """Run ``function`` on a thread and fail if it does not finish in time (it must not hang)."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = function()
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise AssertionError(f"did not finish within {seconds} s")
    if "error" in outcome:
        raise outcome["error"]
    result: T = outcome["value"]
    return result


def files_left_in(folder: Path) -> list[str]:
    """Return the names in a folder, hidden ones included, sorted."""
    return sorted(entry.name for entry in folder.iterdir())
