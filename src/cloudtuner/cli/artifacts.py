"""`cloudtuner jobs artifacts ID` and `cloudtuner jobs download ID [--to DIR]`, over HTTP only.

``download`` fetches the files a job delivered back to the server (its local artifacts) into
``DIR/<job id>/<path>``, one progress bar per file and one for the whole. A file is first written
to ``<name>.part``; an interrupted download resumes from there with a ``Range`` request, and each
file is checked against its SHA-256 before it takes its name. Files delivered elsewhere (S3, the
Hub) are listed with where to find them. A file already there with the right hash is skipped.
"""

from __future__ import annotations

import hashlib
from pathlib import Path, PurePosixPath
from typing import Annotated

import typer
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

from cloudtuner.cli.common import ApiKeyOption, CommandError, JsonOption, UrlOption, client, console, err_console
from cloudtuner.cli.common import print_json as print_reply
from cloudtuner.client.http import CloudtunerClient
from cloudtuner.schemas.artifacts import Artifact, ArtifactListResponse

CHUNK = 1024 * 1024


def _size(value: int) -> str:
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1024
    return f"{size:,.1f} TiB"


def _table(reply: ArtifactListResponse) -> Table:
    table = Table(title=f"Artifacts of job {reply.job_id}", title_justify="left")
    for column in ("id", "path", "kind", "size", "destination", "sha256", "delivered"):
        table.add_column(column, overflow="fold")
    for item in reply.artifacts:
        table.add_row(
            str(item.id),
            item.path,
            item.kind.value,
            _size(item.size_bytes),
            item.destination.value,
            (item.sha256 or "-")[:12],
            item.delivered_at.strftime("%Y-%m-%d %H:%M"),
        )
    return table


def artifacts(job_id: str, url: UrlOption = None, api_key: ApiKeyOption = None, as_json: JsonOption = False) -> None:
    """List the files a job delivered (weights, checkpoints, samples) and where they are."""
    with client(url, api_key) as api:
        reply = api.list_artifacts(job_id)
    if as_json:
        print_reply(reply)
        return
    if reply.artifacts:
        console.print(_table(reply))
        console.print(f"{len(reply.artifacts)} files, {_size(reply.total_bytes)}.")
    else:
        console.print(f"Job {job_id} has delivered no files yet.")
    if reply.delivery is not None:
        delivery = reply.delivery
        line = f"Delivery: {delivery.destination} ({delivery.state.value})"
        if delivery.location:
            line += f" to {delivery.location}"
        console.print(line + (f"; error: {delivery.error}" if delivery.error else ""), soft_wrap=True)


def _target(folder: Path, job_id: str, item: Artifact) -> Path:
    parts = PurePosixPath(item.path).parts
    if not parts or any(part in ("..", ".", "") or "\\" in part for part in parts) or item.path.startswith("/"):
        raise CommandError(f"The server named a file {item.path!r} that cannot be saved safely; not downloaded.")
    return folder.joinpath(job_id, *parts)


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch(api: CloudtunerClient, item: Artifact, target: Path, bars: Progress, total_task: TaskID) -> None:
    """Download one artifact to ``target`` through ``<target>.part``, resuming and checking its hash."""
    assert item.download_url is not None
    partial = target.with_name(target.name + ".part")
    start = partial.stat().st_size if partial.exists() else 0
    if start > item.size_bytes:
        partial.unlink()
        start = 0
    task = bars.add_task(item.path, total=item.size_bytes, completed=start)
    bars.advance(total_task, start)
    if start < item.size_bytes:
        headers = {"Range": f"bytes={start}-"} if start else None
        with api.stream(item.download_url, headers=headers) as response:
            if start and response.status_code != 206:
                bars.advance(total_task, -start)
                start = 0
                bars.update(task, completed=0)
            with partial.open("ab" if start else "wb") as handle:
                for chunk in response.iter_bytes(CHUNK):
                    handle.write(chunk)
                    bars.advance(task, len(chunk))
                    bars.advance(total_task, len(chunk))
    if item.sha256 is not None and _sha256_of(partial) != item.sha256:
        partial.unlink()
        raise CommandError(f"{item.path} did not arrive intact (its SHA-256 differs); run the download again.")
    partial.replace(target)


def download(
    job_id: str,
    to: Annotated[Path, typer.Option("--to", help="Folder to save into (files go to <folder>/<job id>/).")] = Path(),
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Download the files a job delivered back to this server, with progress bars."""
    with client(url, api_key, timeout=60.0) as api:
        reply = api.list_artifacts(job_id)
        local = [item for item in reply.artifacts if item.download_url]
        elsewhere = [item for item in reply.artifacts if not item.download_url]
        for item in elsewhere:
            err_console.print(f"{item.path}: delivered to {item.web_url or item.location}", soft_wrap=True)
        if not local:
            raise CommandError(
                f"Job {job_id} has no files on this server to download"
                + (" (its files were delivered elsewhere, listed above)." if elsewhere else ".")
            )
        plan: list[tuple[Artifact, Path]] = []
        for item in local:
            target = _target(to, job_id, item)
            if target.exists() and item.sha256 is not None and _sha256_of(target) == item.sha256:
                continue
            plan.append((item, target))
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=err_console) as bars:
            total_task = bars.add_task("total", total=sum(item.size_bytes for item, _ in plan))
            for item, target in plan:
                target.parent.mkdir(parents=True, exist_ok=True)
                _fetch(api, item, target, bars, total_task)
    skipped = len(local) - len(plan)
    console.print(
        f"Downloaded {len(plan)} files to {to / job_id}" + (f" ({skipped} already there)." if skipped else "."),
        soft_wrap=True,
    )


def register(app: typer.Typer) -> None:
    """Add ``artifacts`` and ``download`` to the ``jobs`` command group."""
    app.command()(artifacts)
    app.command()(download)
