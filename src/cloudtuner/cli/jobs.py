"""`cloudtuner jobs ...`: submit, list, show, logs, watch, cancel, delete, sync."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Group
from rich.live import Live
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from cloudtuner.cli.common import (
    ApiKeyOption,
    CommandError,
    JsonOption,
    UrlOption,
    ago,
    client,
    console,
    err_console,
    money,
    print_json,
    styled_status,
)
from cloudtuner.cli.uploads import ask_consent, follow_upload, show_summary, size
from cloudtuner.client.http import CloudtunerClient
from cloudtuner.client.simpletuner_files import read_config_file, read_config_folder, read_dataloader_file
from cloudtuner.schemas.jobs import JobDetail, JobProgressResponse, JobSummary

app = typer.Typer(help="Submit and follow training jobs.", no_args_is_help=True)

TERMINAL = {"completed", "failed", "cancelled"}


def _submit_body(
    config_name: str | None,
    config_file: Path | None,
    dataloader_file: Path | None,
    config_dir: Path | None,
) -> dict[str, Any]:
    chosen = [x for x in (config_name, config_file, config_dir) if x is not None]
    if len(chosen) != 1:
        raise CommandError(
            "Say what to train with exactly one of --config NAME, --config-file FILE or --config-dir DIR."
        )
    if config_name is not None:
        if dataloader_file is not None:
            return {"config_name_to_load": config_name, "dataloader_config": read_dataloader_file(dataloader_file)}
        return {"config_name_to_load": config_name}
    if config_dir is not None:
        local = read_config_folder(config_dir)
        return {"config": local.config, "dataloader_config": local.dataloader}
    assert config_file is not None
    if dataloader_file is None:
        raise CommandError("--config-file needs --dataloader-file (the multidatabackend.json of its datasets).")
    return {"config": read_config_file(config_file), "dataloader_config": read_dataloader_file(dataloader_file)}


@app.command()
def submit(
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    provider: Annotated[str, typer.Option("--provider", "-p", help="Where to run the job.")] = "replicate",
    config_name: Annotated[str | None, typer.Option("--config", "-c", help="A saved config's name.")] = None,
    config_file: Annotated[Path | None, typer.Option(help="A config.json to send inline.")] = None,
    dataloader_file: Annotated[Path | None, typer.Option(help="Its multidatabackend.json.")] = None,
    config_dir: Annotated[Path | None, typer.Option(help="A SimpleTuner config folder to send inline.")] = None,
    run_name: Annotated[str | None, typer.Option("--run-name", help="tracker_run_name of the run.")] = None,
    idempotency_key: Annotated[
        str | None, typer.Option(help="Retry-safe key: resubmitting returns the same job.")
    ] = None,
    hardware: Annotated[str | None, typer.Option(help="Hardware profile, e.g. gpu-l40s.")] = None,
    budget: Annotated[
        float | None, typer.Option("--budget", min=0.01, help="Budget cap in US dollars: cancel the job at this cost.")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Consent to uploading local datasets.")] = False,
    watch_job: Annotated[bool, typer.Option("--watch", help="Follow the job until it ends.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Queue a training job and print its id."""
    body = _submit_body(config_name, config_file, dataloader_file, config_dir)
    options: tuple[tuple[str, Any], ...] = (
        ("tracker_run_name", run_name), ("idempotency_key", idempotency_key), ("hardware", hardware),
        ("budget_usd", budget),
    )  # fmt: skip
    for key, value in options:
        if value is not None:
            body[key] = value
    with client(url, api_key) as api:
        if yes:
            body["upload_consent"] = True
        else:
            preview = api.preview_job(provider, body)
            if preview.needs_upload_consent and preview.upload_summary is not None:
                show_summary(preview.upload_summary, provider)
                if not ask_consent(provider):
                    raise CommandError("Not submitted: the upload was not confirmed.")
                body["upload_consent"] = True
        reply = api.submit_job(provider, body)
        if as_json:
            print_json(reply)
        elif reply.idempotent_hit:
            console.print(
                f"Job {reply.job_id} already exists for this idempotency key ({styled_status(reply.status)})."
            )
        else:
            console.print(f"Submitted job [bold]{reply.job_id}[/] to {provider} ({styled_status(reply.status)}).")
            if reply.estimate is not None and reply.estimate.high_usd is not None:
                estimate = reply.estimate
                console.print(
                    f"Estimated cost {money(estimate.low_usd or 0.0)} to {money(estimate.high_usd or 0.0)} "
                    f"(from {estimate.basis.source}; {estimate.basis.hardware or 'default hardware'})."
                )
            for warning in reply.warnings:
                err_console.print(f"[yellow]warning:[/] {warning}")
            if reply.job.upload_summary is not None and not as_json:
                status = follow_upload(api, reply.job_id)
                console.print(f"Job {reply.job_id} is {styled_status(status)}.")
        if watch_job:
            raise typer.Exit(_watch(api, reply.job_id, interval=2.0))


def _cost(job: JobSummary) -> str:
    """Return a job's cost; ``~`` marks one still accruing (or never confirmed by the provider)."""
    return money(job.cost_usd) if job.cost_final or job.cost_usd == 0 else f"~{money(job.cost_usd)}"


def _estimate(job: JobSummary) -> str:
    if job.estimate_high_usd is None:
        return "-"
    return f"{money(job.estimate_low_usd or 0.0)}-{money(job.estimate_high_usd)}"


def _jobs_table(jobs: list[JobSummary]) -> Table:
    table = Table(show_edge=False, pad_edge=False)
    columns = ("JOB ID", "STATUS", "PROVIDER", "HARDWARE", "RUN NAME", "PROGRESS", "LOSS", "COST", "ESTIMATE", "BUDGET")
    for column in (*columns, "AGE"):
        # The id stays whole however narrow the terminal: people copy it into other commands.
        table.add_column(column, no_wrap=column in ("JOB ID", "STATUS"), min_width=26 if column == "JOB ID" else None)
    for job in jobs:
        progress = job.progress
        steps = _steps(progress)
        loss = f"{progress.loss:.4f}" if progress and progress.loss is not None else "-"
        table.add_row(
            job.job_id,
            styled_status(job.status),
            job.provider,
            job.hardware or "-",
            job.tracker_run_name or job.config_name or "-",
            steps,
            loss,
            _cost(job),
            _estimate(job),
            money(job.budget_usd) if job.budget_usd is not None else "-",
            ago(job.created_at),
        )
    return table


@app.command()
def preview(
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    provider: Annotated[str, typer.Option("--provider", "-p", help="Where the job would run.")] = "replicate",
    config_name: Annotated[str | None, typer.Option("--config", "-c", help="A saved config's name.")] = None,
    config_file: Annotated[Path | None, typer.Option(help="A config.json to send inline.")] = None,
    dataloader_file: Annotated[Path | None, typer.Option(help="Its multidatabackend.json.")] = None,
    config_dir: Annotated[Path | None, typer.Option(help="A SimpleTuner config folder to send inline.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Show what a submission would upload, without submitting it."""
    body = _submit_body(config_name, config_file, dataloader_file, config_dir)
    with client(url, api_key) as api:
        reply = api.preview_job(provider, body)
    if as_json:
        print_json(reply)
    elif reply.upload_summary is None:
        console.print(f"Nothing local would be uploaded to {provider}.")
    else:
        show_summary(reply.upload_summary, provider)
        if not reply.upload_summary.fits_upload_limit:
            over = size(reply.upload_summary.bytes_over_limit)
            console.print(f"[red]Over {provider}'s upload limit by {over}: the submission would be refused.[/]")
        elif reply.needs_upload_consent:
            console.print("Submitting asks for your consent (or pass --yes).")


@app.command("list")
def list_jobs(
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    status: Annotated[list[str] | None, typer.Option("--status", "-s", help="Only these states (repeatable).")] = None,
    provider: Annotated[str | None, typer.Option(help="Only this provider's jobs.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="Jobs per page.")] = 20,
    all_pages: Annotated[bool, typer.Option("--all", help="Every page, not only the first.")] = False,
    sync: Annotated[bool, typer.Option("--sync", help="Read active jobs from their providers first.")] = False,
    as_json: JsonOption = False,
) -> None:
    """List jobs, newest first."""
    with client(url, api_key) as api:
        jobs: list[JobSummary] = []
        cursor = None
        while True:
            page = api.list_jobs(limit=limit, statuses=status, provider=provider, cursor=cursor, sync_active=sync)
            jobs.extend(page.jobs)
            cursor, sync = page.next_cursor, False
            if not all_pages or cursor is None:
                break
    if as_json:
        print_json({"jobs": [job.model_dump(mode="json") for job in jobs], "next_cursor": cursor})
        return
    if not jobs:
        console.print("No jobs yet. Submit one with `cloudtuner jobs submit`.")
        return
    console.print(_jobs_table(jobs))
    if cursor:
        console.print(f"[dim]More jobs: --all, or the API with cursor={cursor}[/]")


def _detail_table(job: JobDetail) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    progress = job.progress
    rows = [
        ("Job", job.job_id),
        ("Status", styled_status(job.status) + (" (cancel requested)" if job.cancel_requested else "")),
        ("Provider", job.provider + (f" / run {job.provider_job_id}" if job.provider_job_id else "")),
        ("Run name", job.tracker_run_name or "-"),
        (
            "Config",
            (job.config_name or job.config_snapshot.source)
            + (f" @ {job.config_snapshot.commit[:12]}" if job.config_snapshot.commit else ""),
        ),
        ("Model", str(job.config.get("--model_family", job.config.get("model_family", "-")))),
        ("Datasets", ", ".join(str(d.get("id")) for d in job.dataloader_config) or "-"),
        ("Hardware", job.hardware or "-"),
        (
            "Progress",
            f"{progress.stage or ''} {_steps(progress)}"
            if progress and progress.total_steps
            else (progress.stage or "-")
            if progress
            else "-",
        ),
        ("Loss", f"{progress.loss:.4f}" if progress and progress.loss is not None else "-"),
        ("Cost", _cost(job) + (f" (budget {money(job.budget_usd)})" if job.budget_usd is not None else "")),
        ("Estimate", _estimate(job) + (f" ({job.cost_estimate.basis.source})" if job.cost_estimate else "")),
        ("Created", f"{job.created_at:%Y-%m-%d %H:%M:%S} UTC ({ago(job.created_at)} ago)"),
    ]
    if job.error:
        rows.append(("Error", f"[red]{job.error}[/]"))
    for label, value in rows:
        table.add_row(label, value)
    return table


@app.command()
def show(job_id: str, url: UrlOption = None, api_key: ApiKeyOption = None, as_json: JsonOption = False) -> None:
    """Show one job with its timeline."""
    with client(url, api_key) as api:
        job = api.get_job(job_id).job
    if as_json:
        print_json({"job": job.model_dump(mode="json")})
        return
    console.print(_detail_table(job))
    console.print()
    timeline = Table(title="Timeline", show_edge=False, title_justify="left")
    for column in ("TIME (UTC)", "FROM", "TO", "CAUSE", "DETAIL"):
        timeline.add_column(column)
    for event in job.events:
        timeline.add_row(
            f"{event.created_at:%H:%M:%S}",
            event.from_status or "-",
            styled_status(event.to_status),
            event.cause,
            event.detail or "",
        )
    console.print(timeline)


@app.command()
def logs(
    job_id: str,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines until the job ends.")] = False,
    tail: Annotated[int | None, typer.Option(help="Start with only the last N lines.")] = None,
    interval: Annotated[float, typer.Option(help="Seconds between polls with --follow.")] = 2.0,
) -> None:
    """Print a job's log."""
    with client(url, api_key) as api:
        chunk = api.get_logs(job_id, tail=tail)
        typer.echo(chunk.logs, nl=False)
        while follow and chunk.status not in TERMINAL:
            time.sleep(interval)
            chunk = api.get_logs(job_id, offset=chunk.next_offset)
            typer.echo(chunk.logs, nl=False)


_BYTE_STAGES = ("packaging", "uploading")
"""Stages whose progress counts bytes of the datasets' archive, not training steps."""


def _steps(progress: JobProgressResponse | None) -> str:
    """Return "step/total", "done/total" in MiB while packaging or uploading, or "-"."""
    if progress is None or not progress.total_steps:
        return "-"
    if progress.stage in _BYTE_STAGES:
        return f"{size(progress.step or 0)}/{size(progress.total_steps)}"
    return f"{progress.step}/{progress.total_steps}"


def _watch_view(job: JobDetail, log_tail: str) -> Panel:
    progress = job.progress
    parts: list[Any] = [_detail_table(job)]
    if progress and progress.total_steps:
        parts.append(ProgressBar(total=progress.total_steps, completed=progress.step or 0, width=50))
    if log_tail:
        parts.append(Text("\n" + log_tail.rstrip(), style="dim"))
    return Panel(Group(*parts), title=f"cloudtuner job {job.job_id}", border_style="cyan")


def _watch(api: CloudtunerClient, job_id: str, interval: float) -> int:
    job = api.get_job(job_id).job
    if not console.is_terminal:
        last = None
        while True:
            progress = job.progress
            label = progress.stage if progress and progress.stage in _BYTE_STAGES else "step"
            loss = f" loss={progress.loss:.4f}" if progress and progress.loss is not None else ""
            line = f"{job.status} {label}={_steps(progress)}{loss} cost={money(job.cost_usd)}"
            if line != last:
                typer.echo(f"{job.job_id} {line}")
                last = line
            if job.status in TERMINAL:
                break
            time.sleep(interval)
            job = api.get_job(job_id).job
    else:
        with Live(_watch_view(job, ""), console=console, refresh_per_second=4) as live:
            while True:
                tail = api.get_logs(job_id, tail=8).logs
                live.update(_watch_view(job, tail))
                if job.status in TERMINAL:
                    break
                time.sleep(interval)
                job = api.get_job(job_id).job
    if job.status == "completed":
        return 0
    if job.error:
        err_console.print(f"[red]{job.status}:[/] {job.error}")
    return 1


@app.command()
def watch(
    job_id: str,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    interval: Annotated[float, typer.Option(help="Seconds between polls.")] = 2.0,
) -> None:
    """Follow a job's status, step, loss and cost until it ends; exit 0 only if it completed."""
    with client(url, api_key) as api:
        raise typer.Exit(_watch(api, job_id, interval))


@app.command()
def cancel(job_id: str, url: UrlOption = None, api_key: ApiKeyOption = None, as_json: JsonOption = False) -> None:
    """Cancel a queued or running job."""
    with client(url, api_key) as api:
        reply = api.cancel_job(job_id)
    if as_json:
        print_json(reply)
    elif reply.cancel_requested:
        console.print(
            f"Asked the provider to stop job {job_id}; it is {styled_status(reply.status)} until it confirms."
        )
    else:
        console.print(f"Job {job_id} is {styled_status(reply.status)}.")


@app.command()
def delete(job_id: str, url: UrlOption = None, api_key: ApiKeyOption = None, as_json: JsonOption = False) -> None:
    """Delete a finished job and its logs."""
    with client(url, api_key) as api:
        reply = api.delete_job(job_id)
    if as_json:
        print_json(reply)
    else:
        console.print(f"Deleted job {job_id}.")


@app.command()
def sync(url: UrlOption = None, api_key: ApiKeyOption = None, as_json: JsonOption = False) -> None:
    """Read active jobs from their providers now, and import runs made elsewhere."""
    with client(url, api_key, timeout=60.0) as api:
        reply = api.sync_jobs()
    if as_json:
        print_json(reply)
        return
    console.print(f"Synced {reply.synced} active job(s); imported {reply.imported} run(s).")
    for error in reply.errors:
        err_console.print(f"[yellow]warning:[/] {error}")
