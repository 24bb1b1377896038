"""Reading SimpleTuner config folders from disk, for `cloudtuner configs import` and `jobs submit`."""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CONFIG_NAMES = ("config.json", "config.toml")
DATALOADER_NAME = "multidatabackend.json"
_DATALOADER_KEYS = ("--data_backend_config", "data_backend_config")


class ConfigFolderError(Exception):
    """A config folder or file could not be read; ``str()`` says which and why."""


@dataclass(frozen=True)
class LocalConfig:
    """A config read from disk."""

    name: str
    config: dict[str, Any]
    dataloader: list[dict[str, Any]]
    source: Path


def read_json(path: Path) -> Any:
    """Return the JSON in ``path``.

    Raises:
        ConfigFolderError: the file is missing or is not JSON.
    """
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigFolderError(f"{path} does not exist.") from exc
    except json.JSONDecodeError as exc:
        raise ConfigFolderError(f"{path} is not valid JSON: {exc.msg} at line {exc.lineno}.") from exc
    except OSError as exc:
        raise ConfigFolderError(f"Cannot read {path}: {exc.strerror}.") from exc


def read_config_file(path: Path) -> dict[str, Any]:
    """Return the arguments in a config.json or config.toml.

    Raises:
        ConfigFolderError: unreadable, or not an object of arguments.
    """
    if path.suffix == ".toml":
        try:
            data: Any = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigFolderError(f"Cannot read {path}: {exc}.") from exc
    else:
        data = read_json(path)
    if not isinstance(data, dict):
        raise ConfigFolderError(f'{path} must hold an object of arguments, such as {{"--model_family": "flux"}}.')
    return data


def read_dataloader_file(path: Path) -> list[dict[str, Any]]:
    """Return the datasets in a multidatabackend.json.

    Raises:
        ConfigFolderError: unreadable, or not a list of dataset objects.
    """
    data = read_json(path)
    if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        raise ConfigFolderError(f"{path} must hold a list of datasets, each an object with an id and a type.")
    return data


def _dataloader_path(folder: Path, config: dict[str, Any]) -> Path:
    for key in _DATALOADER_KEYS:
        value = config.get(key)
        if isinstance(value, str) and value:
            named = Path(value).expanduser()
            for candidate in (named, Path.cwd() / named, folder / named, folder / named.name):
                if candidate.is_file():
                    return candidate
    return folder / DATALOADER_NAME


def read_config_folder(folder: Path, name: str | None = None) -> LocalConfig:
    """Return the config in one SimpleTuner config folder (config.json + its dataloader file).

    The dataloader file is the one named by ``--data_backend_config`` when it can be found
    (as given, from the current folder, or inside ``folder``), else ``multidatabackend.json``.

    Raises:
        ConfigFolderError: the folder has no config file, or a file cannot be read.
    """
    config_path = next((folder / n for n in CONFIG_NAMES if (folder / n).is_file()), None)
    if config_path is None:
        raise ConfigFolderError(f"{folder} has no config.json or config.toml.")
    config = read_config_file(config_path)
    dataloader = read_dataloader_file(_dataloader_path(folder, config))
    return LocalConfig(name=name or folder.resolve().name, config=config, dataloader=dataloader, source=folder)


def find_config_folders(root: Path) -> list[Path]:
    """Return ``root`` if it is a config folder, else its sub-folders that are, sorted.

    Raises:
        ConfigFolderError: ``root`` is not a folder, or holds no config folder.
    """
    if not root.is_dir():
        raise ConfigFolderError(f"{root} is not a folder.")
    if any((root / n).is_file() for n in CONFIG_NAMES):
        return [root]
    folders = sorted(p for p in root.iterdir() if p.is_dir() and any((p / n).is_file() for n in CONFIG_NAMES))
    if not folders:
        raise ConfigFolderError(f"{root} holds no SimpleTuner config (a config.json), nor any folder that does.")
    return folders
