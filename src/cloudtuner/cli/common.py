"""What every client command shares: the server options, output, and turning errors into one line."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from pydantic import BaseModel
from rich.console import Console

from cloudtuner.client.http import CloudtunerClient

UrlOption = Annotated[
    str | None,
    typer.Option("--url", envvar="CLOUDTUNER_URL", help="The server's base URL.", show_default="http://127.0.0.1:8001"),
]
ApiKeyOption = Annotated[
    str | None,
    typer.Option("--api-key", envvar="CLOUDTUNER_API_KEY", help="API key (stk_...).", show_default=False),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the server's JSON reply instead of a table.")]

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


class CommandError(Exception):
    """A user error found by the CLI itself; printed as one line."""


def client(url: str | None, api_key: str | None, timeout: float = 30.0) -> CloudtunerClient:
    """Return a client for the server named by the options or the environment."""
    return CloudtunerClient(url, api_key=api_key, timeout=timeout)


def print_json(value: BaseModel | dict[str, Any] | list[Any]) -> None:
    """Print a reply as indented JSON on stdout."""
    if isinstance(value, BaseModel):
        sys.stdout.write(value.model_dump_json(indent=2) + "\n")
    else:
        sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


STATUS_STYLES = {
    "pending_approval": "magenta",
    "queued": "cyan",
    "uploading": "blue",
    "starting": "blue",
    "running": "yellow",
    "completed": "green",
    "failed": "red",
    "cancelled": "dim",
}


def styled_status(status: str) -> str:
    """Return ``status`` with rich markup for its colour."""
    return f"[{STATUS_STYLES.get(status, 'white')}]{status}[/]"


def ago(moment: datetime | None) -> str:
    """Return how long ago ``moment`` was, briefly ("3m", "2h", "5d")."""
    if moment is None:
        return "-"
    seconds = max(0, int((datetime.now(UTC) - moment).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def money(value: float) -> str:
    """Return a dollar amount for display."""
    return f"${value:,.2f}" if value >= 0.01 or value == 0 else f"${value:.4f}"
