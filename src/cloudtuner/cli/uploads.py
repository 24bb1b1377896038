"""Showing an upload summary, asking for consent, and following packaging and upload progress."""

from __future__ import annotations

import sys
import time

from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from cloudtuner.cli.common import CommandError, console, err_console
from cloudtuner.client.http import CloudtunerClient
from cloudtuner.schemas.uploads import UploadSummary


def size(value: int) -> str:
    """Return a byte count for people (KiB, MiB, GiB)."""
    amount = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if amount < 1024 or unit == "GiB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return f"{amount:.1f} GiB"


def show_summary(summary: UploadSummary, provider: str) -> None:
    """Print what would be uploaded: datasets, files, sizes, captions and excluded files."""
    table = Table(title=f"Local datasets to upload to {provider}", title_justify="left", show_edge=False)
    for column in ("DATASET", "FOLDER", "FILES", "IMAGES", "CAPTIONS", "SIZE", "EXCLUDED"):
        table.add_column(column)
    for dataset in summary.datasets:
        table.add_row(
            dataset.dataset_id, dataset.path, str(dataset.file_count), str(dataset.image_count),
            "-" if dataset.captions_found is None else str(dataset.captions_found),
            size(dataset.total_bytes), str(dataset.excluded_count),
        )  # fmt: skip
    console.print(table)
    for dataset in summary.datasets:
        for item in dataset.excluded:
            console.print(f"  [dim]excluded[/] {dataset.dataset_id}/{item.path}: {item.detail}")
        hidden = dataset.excluded_count - len(dataset.excluded)
        if hidden > 0:
            console.print(f"  [dim]... and {hidden} more excluded in {dataset.dataset_id}[/]")
    limit = f" of {size(summary.upload_limit_bytes)} allowed" if summary.upload_limit_bytes else ""
    console.print(f"Archive: about {size(summary.estimated_archive_bytes)}{limit}.")


def ask_consent(provider: str) -> bool:
    """Ask the user to confirm the upload; refuse to guess when nobody can answer.

    Raises:
        CommandError: standard input is not a terminal.
    """
    if not sys.stdin.isatty():
        raise CommandError(
            "This job uploads local datasets. Review them with `cloudtuner jobs preview`, then submit with --yes."
        )
    answer = console.input(f"Upload these datasets to {provider}? [y/N] ").strip().lower()
    return answer in ("y", "yes")


def follow_upload(api: CloudtunerClient, job_id: str, *, timeout: float = 3600.0) -> str:
    """Show packaging and upload progress until the job has left them; return its status then."""
    deadline = time.monotonic() + timeout
    columns = (
        TextColumn("{task.description:<10}"), BarColumn(), DownloadColumn(binary_units=True),
        TransferSpeedColumn(), TimeRemainingColumn(),
    )  # fmt: skip
    with Progress(*columns, console=err_console, transient=False) as bars:
        tasks: dict[str, TaskID] = {}
        totals: dict[TaskID, int] = {}
        while True:
            job = api.get_job(job_id).job
            progress = job.progress
            if job.status in ("queued", "uploading") and progress and progress.stage in ("packaging", "uploading"):
                stage = progress.stage
                if stage not in tasks:
                    for other in tasks.values():
                        bars.update(other, completed=totals[other])
                    tasks[stage] = bars.add_task(stage.capitalize(), total=progress.total_steps or 0)
                totals[tasks[stage]] = progress.total_steps or 0
                bars.update(tasks[stage], completed=progress.step or 0, total=totals[tasks[stage]])
            if job.status not in ("queued", "uploading") or time.monotonic() > deadline:
                for task in tasks.values():
                    bars.update(task, completed=totals[task])
                return job.status
            time.sleep(0.5)
