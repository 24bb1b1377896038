"""The `cloudtuner` command.

Client commands talk to a server over HTTP only; `cloudtuner server` starts one, loading the
server by its import string so that the client side never imports server code.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Annotated

import typer

from cloudtuner import __version__
from cloudtuner.cli import configs, jobs
from cloudtuner.cli.common import CommandError, err_console
from cloudtuner.client.http import ClientError
from cloudtuner.client.simpletuner_files import ConfigFolderError

app = typer.Typer(
    name="cloudtuner",
    help="A self-hosted control plane for fine-tuning jobs: Replicate, your GPU machines and this one.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(jobs.app, name="jobs")
app.add_typer(configs.app, name="configs")


def _version(value: bool) -> None:
    if value:
        print(f"cloudtuner {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """cloudtuner: queue, run and follow fine-tuning jobs."""


@app.command()
def server(
    host: Annotated[str | None, typer.Option(help="Address to bind.", show_default="127.0.0.1")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.", show_default="8001")] = None,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="Where to keep data.", show_default="~/.cloudtuner")
    ] = None,
) -> None:
    """Run the server: API, OpenAPI docs at /docs, and the background scheduler."""
    serve = importlib.import_module("cloudtuner.api.serve").serve
    raise typer.Exit(serve(host, port, data_dir))


def main() -> None:
    """Entry point: run the command; print user errors as one line and exit non-zero."""
    try:
        app()
    except (ClientError, CommandError, ConfigFolderError) as exc:
        err_console.print(f"[red]error:[/] {exc}", soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
