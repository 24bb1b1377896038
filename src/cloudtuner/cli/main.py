"""The `cloudtuner` command.

Client commands talk to a server over HTTP only; `cloudtuner server` starts one, loading the
server by its import string so that the client side never imports server code.

`cloudtuner server` with plain options is dispatched before typer, rich and the client commands
are imported: they cost the server's start time and memory and it needs none of them. Help, and
any option the small parser here does not take as it is (errors included), go through typer.

No ``from __future__ import annotations`` here: the typer commands are defined inside
:func:`build_app`, and their ``Annotated`` options are evaluated there, where typer is imported.
"""

import functools
import importlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from cloudtuner import __version__

if TYPE_CHECKING:
    import typer

SERVE_MODULE = "cloudtuner.api.serve"
"""Where `cloudtuner server` finds ``serve(host, port, data_dir)``; imported by name only."""

ServerOptions = tuple[str | None, int | None, Path | None]


def _serve(host: str | None, port: int | None, data_dir: Path | None) -> int:
    """Run the server (imported by its import string) and return its exit code."""
    serve = importlib.import_module(SERVE_MODULE).serve
    code: int = serve(host, port, data_dir)
    return code


def parse_server_args(args: list[str]) -> ServerOptions | None:
    """Return ``(host, port, data_dir)`` from the arguments after ``server``.

    Takes ``--host X``, ``--port N``, ``--data-dir PATH`` (also as ``--opt=value``; the last one
    given wins), as the typer command does. Returns None for anything else (help, unknown or
    missing options, a port that is not a number, a value that looks like an option), which is
    left to typer, so that it prints its usual help and usage errors.
    """
    values: dict[str, str] = {}
    rest = iter(args)
    for arg in rest:
        name, has_value, value = arg.partition("=")
        if name not in ("--host", "--port", "--data-dir"):
            return None
        if not has_value:
            next_arg = next(rest, None)
            if next_arg is None:
                return None
            value = next_arg
        if not value or value.startswith("-"):
            return None
        values[name] = value
    port = values.get("--port")
    if port is not None and not (port.isascii() and port.isdigit()):
        return None
    data_dir = values.get("--data-dir")
    return (
        values.get("--host"),
        int(port) if port is not None else None,
        Path(data_dir) if data_dir is not None else None,
    )


@functools.cache
def build_app() -> "typer.Typer":
    """Return the typer app with every command; imports typer, rich and the client commands."""
    import typer

    from cloudtuner.cli import artifacts, auth, configs, cost, jobs, storage, workers

    app = typer.Typer(
        name="cloudtuner",
        help="A self-hosted control plane for fine-tuning jobs: Replicate, your GPU machines and this one.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
    )
    artifacts.register(jobs.app)  # `jobs artifacts` and `jobs download`
    app.add_typer(jobs.app, name="jobs")
    app.add_typer(configs.app, name="configs")
    app.add_typer(cost.app, name="cost")
    app.add_typer(storage.app, name="storage")
    auth.register(app)
    workers.register(app)
    app.add_typer(importlib.import_module("cloudtuner.cli.queue").app, name="queue")

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
        raise typer.Exit(_serve(host, port, data_dir))

    return app


def __getattr__(name: str) -> Any:
    """Build ``app`` (the typer app) on first use, so that importing this module stays cheap."""
    if name == "app":
        return build_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _run_server(options: ServerOptions) -> None:
    """`cloudtuner server` without typer: run it and exit with its code."""
    try:
        code = _serve(*options)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code)


def main() -> None:
    """Entry point: run the command; print user errors as one line and exit non-zero."""
    args = sys.argv[1:]
    if args[:1] == ["server"]:
        options = parse_server_args(args[1:])
        if options is not None:
            _run_server(options)

    from cloudtuner.cli.common import CommandError, err_console
    from cloudtuner.client.http import ClientError
    from cloudtuner.client.simpletuner_files import ConfigFolderError

    try:
        build_app()()
    except (ClientError, CommandError, ConfigFolderError) as exc:
        err_console.print(f"[red]error:[/] {exc}", soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
