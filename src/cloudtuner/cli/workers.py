"""`cloudtuner workers ...` (the admin's view of workers) and `cloudtuner worker` (run one)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cloudtuner.cli.common import (
    ApiKeyOption,
    CommandError,
    JsonOption,
    UrlOption,
    ago,
    client,
    console,
    err_console,
    print_json,
)
from cloudtuner.schemas.workers import (
    CreateWorkerResponse,
    DeleteWorkerResponse,
    WorkerListResponse,
    WorkerResponse,
    WorkerView,
)

WORKERS_PATH = "/api/admin/workers"

app = typer.Typer(
    help="Self-hosted GPU workers: create them, see what they do, drain and rotate.", no_args_is_help=True
)

WorkerArgument = Annotated[str, typer.Argument(help="The worker's name or id.")]

STATUS_STYLES = {"idle": "green", "busy": "cyan", "draining": "yellow", "offline": "red", "revoked": "dim"}


def parse_labels(values: list[str] | None) -> dict[str, str]:
    """Return ``k=v`` options as a dict.

    Raises:
        CommandError: a value is not ``key=value``.
    """
    labels: dict[str, str] = {}
    for value in values or []:
        key, sep, label = value.partition("=")
        if not sep or not key.strip():
            raise CommandError(f"A label is key=value, e.g. gpu=a100; got {value!r}.")
        labels[key.strip()] = label.strip()
    return labels


def _gpus(worker: WorkerView) -> str:
    if not worker.gpus:
        return "-"
    return f"{len(worker.gpus)}x {worker.gpus[0].name} ({worker.gpus[0].memory_mb // 1024} GiB)"


def _status(worker: WorkerView) -> str:
    style = STATUS_STYLES.get(worker.status.value, "white")
    return f"[{style}]{worker.status.value}[/]"


def _show_created(reply: CreateWorkerResponse, as_json: bool) -> None:
    """Print a new token and its command (or the whole reply as JSON)."""
    if as_json:
        print_json(reply)
        return
    console.print(f"Worker [bold]{reply.worker.name}[/] ({reply.worker_id})")
    console.print(f"Token: {reply.token}")
    err_console.print("[yellow]Save the token now: it is not shown again.[/]")
    console.print("\nRun it on the GPU machine with:\n")
    console.print(f"  {reply.command}", soft_wrap=True, markup=False)


@app.command("list")
def list_workers(url: UrlOption = None, api_key: ApiKeyOption = None, as_json: JsonOption = False) -> None:
    """List workers with their status, GPUs, current job and last heartbeat."""
    with client(url, api_key) as api:
        reply = WorkerListResponse.model_validate(api.request("GET", WORKERS_PATH))
    if as_json:
        print_json(reply)
        return
    table = Table("Name", "Status", "GPUs", "Labels", "Current job", "Last heartbeat", "Id")
    for worker in reply.workers:
        labels = ", ".join(f"{k}={v}" for k, v in sorted(worker.labels.items())) or "-"
        table.add_row(
            worker.name,
            _status(worker),
            _gpus(worker),
            labels,
            worker.current_job_id or "-",
            ago(worker.last_heartbeat_at) if worker.last_heartbeat_at else "never",
            worker.worker_id,
        )
    console.print(table)


@app.command()
def create(
    name: Annotated[str, typer.Argument(help="A unique name, e.g. gpu-box-1.")],
    label: Annotated[list[str] | None, typer.Option("--label", help="A label k=v (repeatable).")] = None,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a worker; prints its token (once) and the command that starts it."""
    body = {"name": name, "labels": parse_labels(label)}
    with client(url, api_key) as api:
        reply = CreateWorkerResponse.model_validate(api.request("POST", WORKERS_PATH, json=body))
    _show_created(reply, as_json)


@app.command()
def rotate(
    worker: WorkerArgument,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Give a worker a new token (the old one stops working) and print the new command."""
    with client(url, api_key) as api:
        reply = CreateWorkerResponse.model_validate(api.request("POST", f"{WORKERS_PATH}/{worker}/rotate"))
    _show_created(reply, as_json)


@app.command()
def drain(
    worker: WorkerArgument,
    undo: Annotated[bool, typer.Option("--undo", help="Let it take jobs again.")] = False,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Let a worker finish its current job and take no more."""
    action = "undrain" if undo else "drain"
    with client(url, api_key) as api:
        reply = WorkerResponse.model_validate(api.request("POST", f"{WORKERS_PATH}/{worker}/{action}"))
    if as_json:
        print_json(reply)
        return
    console.print(f"Worker {reply.worker.name} is {_status(reply.worker)}.")


@app.command()
def delete(
    worker: WorkerArgument,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Delete a worker; a job it holds is requeued."""
    with client(url, api_key) as api:
        reply = DeleteWorkerResponse.model_validate(api.request("DELETE", f"{WORKERS_PATH}/{worker}"))
    if as_json:
        print_json(reply)
        return
    console.print(f"Deleted worker {reply.worker_id}.")


def register(root: typer.Typer) -> None:
    """Add `workers ...` and `worker` to the root command."""
    root.add_typer(app, name="workers")

    @root.command()
    def worker(
        orchestrator_url: Annotated[str, typer.Option("--orchestrator-url", help="The server's URL.")],
        worker_token: Annotated[
            str, typer.Option("--worker-token", envvar="CLOUDTUNER_WORKER_TOKEN", help="The worker's token.")
        ],
        persistent: Annotated[
            bool, typer.Option("--persistent", help="Keep taking jobs (default: exit after one).")
        ] = False,
        label: Annotated[list[str] | None, typer.Option("--label", help="A label k=v (repeatable).")] = None,
        trainer_command: Annotated[
            str | None, typer.Option("--trainer-command", help="Run this instead of python -m simpletuner.train.")
        ] = None,
        work_dir: Annotated[
            Path | None, typer.Option("--work-dir", help="Staging folder.", show_default="~/.cloudtuner/worker")
        ] = None,
        server_grace: Annotated[
            float, typer.Option("--server-grace", help="Seconds without the server before the trainer is stopped.")
        ] = 30.0,
    ) -> None:
        """Run a self-hosted GPU worker: take jobs from the server and run their trainer."""
        from cloudtuner.agent.runner import AgentOptions, main_entry

        options = AgentOptions(
            orchestrator_url=orchestrator_url, token=worker_token, persistent=persistent, labels=parse_labels(label),
            server_grace_seconds=server_grace,
        )  # fmt: skip
        if trainer_command:
            options.trainer_command = trainer_command
        if work_dir is not None:
            options.work_dir = work_dir
        raise typer.Exit(main_entry(options))
