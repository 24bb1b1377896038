"""Session tokens saved by `cloudtuner login`, one per server URL, in the user's config dir.

The file is ``$XDG_CONFIG_HOME/cloudtuner/credentials.json`` (``~/.config/cloudtuner/...``),
created with mode 0600 in a folder with mode 0700, and replaced atomically. A file that other
users can read is refused (with how to fix it) rather than used.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

FILE_NAME = "credentials.json"


class CredentialsFileError(Exception):
    """The credentials file cannot be used; ``str()`` says why and what to do."""


def config_dir() -> Path:
    """Return the folder of the CLI's own files."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "cloudtuner"


def credentials_file() -> Path:
    """Return the path of the saved tokens."""
    return config_dir() / FILE_NAME


def server_key(url: str) -> str:
    """Return the form of a server URL tokens are saved under: lower-case scheme and host, no
    trailing slash, no credentials."""
    parts = urlsplit(url.strip())
    host = (parts.hostname or "").lower()
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme.lower(), netloc, parts.path.rstrip("/"), "", ""))


def _read(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise CredentialsFileError(
            f"{path} can be read by other users (mode {mode:o}); run `chmod 600 {path}` or delete it and log in again."
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CredentialsFileError(f"{path} cannot be read ({exc}); delete it and log in again.") from None
    return data if isinstance(data, dict) else {}


def _write(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    descriptor, temporary = tempfile.mkstemp(prefix=".credentials-", dir=path.parent)
    try:
        os.fchmod(descriptor, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def load_token(url: str) -> str | None:
    """Return the session token saved for the server at ``url``, or None.

    Raises:
        CredentialsFileError: the file is readable by others, or unreadable.
    """
    entry = _read(credentials_file()).get("servers", {}).get(server_key(url))
    token = entry.get("token") if isinstance(entry, dict) else None
    return token if isinstance(token, str) and token else None


def save_token(url: str, token: str, username: str) -> Path:
    """Save ``token`` for the server at ``url``; return the file's path."""
    path = credentials_file()
    data = _read(path)
    servers = data.setdefault("servers", {})
    servers[server_key(url)] = {"token": token, "username": username, "saved_at": datetime.now(UTC).isoformat()}
    _write(path, data)
    return path


def forget_token(url: str) -> bool:
    """Delete the token saved for ``url``; return whether there was one."""
    path = credentials_file()
    data = _read(path)
    servers = data.get("servers", {})
    if server_key(url) not in servers:
        return False
    del servers[server_key(url)]
    _write(path, data)
    return True
