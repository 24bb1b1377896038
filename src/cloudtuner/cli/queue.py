"""`cloudtuner queue ...`: the waiting jobs in start order, a job's place, priorities and limits."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from cloudtuner.cli.common import ApiKeyOption, CommandError, JsonOption, UrlOption, client, console, print_json
from cloudtuner.client import queue
from cloudtuner.schemas.queue import QueuedJob, QueueLimits, QueueResponse

app = typer.Typer(
    help="The job queue: what starts next, each job's place and ETA, priorities and limits.",
    invoke_without_command=True,
)
limits_app = typer.Typer(
    help="How many jobs may run at once (all, per user, team, provider) and roles' starting priorities.",
    invoke_without_command=True,
)
app.add_typer(limits_app, name="limits")

LimitOption = Annotated[int, typer.Option("--limit", "-n", min=1, max=500, help="Waiting jobs to list.")]


def duration(seconds: float | None) -> str:
    """Return a number of seconds briefly ("45s", "12m", "3h 5m", "2d 4h"); "-" for None."""
    if seconds is None:
        return "-"
    whole = max(0, int(seconds))
    for unit, size, smaller, smaller_size in (("d", 86400, "h", 3600), ("h", 3600, "m", 60)):
        if whole >= size:
            rest = (whole % size) // smaller_size
            return f"{whole // size}{unit}" + (f" {rest}{smaller}" if rest else "")
    return f"{whole // 60}m" if whole >= 60 else f"{whole}s"


def _priority(job: QueuedJob) -> str:
    gained = job.effective_priority - job.priority
    return f"{job.priority} (+{gained})" if gained else str(job.priority)


def _owner(job: QueuedJob) -> str:
    return job.owner or job.owner_id


def _queue_table(reply: QueueResponse) -> Table:
    table = Table(show_edge=False, pad_edge=False)
    for column in ("#", "JOB", "PRIORITY", "OWNER", "TEAM", "PROVIDER", "AGE", "ETA"):
        table.add_column(column, no_wrap=column in ("JOB", "PRIORITY"), min_width=26 if column == "JOB" else None)
    for job in reply.jobs:
        table.add_row(
            str(job.position),
            job.job_id,
            _priority(job),
            _owner(job),
            job.team or "-",
            job.provider,
            duration(job.waiting_seconds),
            duration(job.eta_seconds),
        )
    return table


def _show_queue(url: str | None, api_key: str | None, as_json: bool, limit: int) -> None:
    with client(url, api_key) as api:
        reply = queue.get_queue(api, limit=limit)
    if as_json:
        print_json(reply)
        return
    if not reply.jobs:
        console.print(f"No job is waiting; {reply.running} busy.")
        return
    console.print(_queue_table(reply))
    more = f" (the first {len(reply.jobs)} shown)" if reply.depth > len(reply.jobs) else ""
    console.print(f"{reply.depth} waiting{more}, {reply.running} busy. PRIORITY (+n): gained by waiting.")


@app.callback()
def root(
    ctx: typer.Context,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
    limit: LimitOption = 100,
) -> None:
    """The job queue; with no command, list the waiting jobs in the order they will start."""
    if ctx.invoked_subcommand is None:
        _show_queue(url, api_key, as_json, limit)


@app.command("list")
def list_queue(
    url: UrlOption = None, api_key: ApiKeyOption = None, as_json: JsonOption = False, limit: LimitOption = 100
) -> None:
    """List the waiting jobs in the order they will start, with priority, owner, age and ETA."""
    _show_queue(url, api_key, as_json, limit)


def _describe(job: QueuedJob) -> str:
    eta = "unknown" if job.eta_seconds is None else f"~{duration(job.eta_seconds)}"
    gained = job.effective_priority - job.priority
    raised = f" (+{gained} from waiting)" if gained else ""
    return (
        f"Job {job.job_id} is number {job.position} in the queue: priority {job.priority}{raised}, "
        f"{job.provider}, waiting {duration(job.waiting_seconds)}, starts in {eta}."
    )


@app.command()
def position(
    job_id: Annotated[str, typer.Argument(help="A waiting job's id.")],
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show a waiting job's place in the queue and a rough ETA."""
    with client(url, api_key) as api:
        reply = queue.get_position(api, job_id)
    if as_json:
        print_json(reply)
        return
    console.print(_describe(reply))


@app.command(context_settings={"ignore_unknown_options": True})
def priority(
    job_id: Annotated[str, typer.Argument(help="A waiting job's id.")],
    value: Annotated[int, typer.Argument(help="The new priority, -1000 to 1000 (higher starts first).")],
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Change a waiting job's priority (leads and admins: needs queue.manage)."""
    with client(url, api_key) as api:
        reply = queue.set_priority(api, job_id, value)
    if as_json:
        print_json(reply)
        return
    console.print(_describe(reply))


# --- limits ---------------------------------------------------------------------------------


def _limit(value: int | None) -> str:
    return "no limit" if value is None else str(value)


def _limits_table(limits: QueueLimits) -> Table:
    table = Table(show_edge=False, pad_edge=False)
    table.add_column("LIMIT")
    table.add_column("VALUE")
    rows = [
        ("busy jobs at once", _limit(limits.max_concurrent)),
        ("per user", _limit(limits.max_concurrent_per_user)),
        ("per team", _limit(limits.max_concurrent_per_team)),
        ("per provider", _limit(limits.max_concurrent_per_provider)),
        *((f"provider {name}", str(cap)) for name, cap in sorted(limits.provider_limits.items())),
        ("waiting jobs per user", _limit(limits.max_queued_per_user)),
        ("one priority step per", duration(limits.aging_seconds) + " waited"),
        *((f"starting priority: {role.value}", str(value)) for role, value in limits.role_priorities.items()),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table


@limits_app.callback()
def show_limits(
    ctx: typer.Context, url: UrlOption = None, api_key: ApiKeyOption = None, as_json: JsonOption = False
) -> None:
    """The queue's limits; with no command, show them."""
    if ctx.invoked_subcommand is not None:
        return
    with client(url, api_key) as api:
        reply = queue.get_limits(api)
    if as_json:
        print_json(reply)
        return
    console.print(_limits_table(reply))


def _pairs(values: list[str] | None, what: str, example: str) -> dict[str, int]:
    """Return ``name=n`` options as a dict.

    Raises:
        CommandError: a value is not ``name=integer``.
    """
    pairs: dict[str, int] = {}
    for raw in values or []:
        name, sep, number = raw.partition("=")
        try:
            if not sep or not name.strip():
                raise ValueError(raw)
            pairs[name.strip().lower()] = int(number)
        except ValueError:
            raise CommandError(f"A {what} is name=number, e.g. {example}; got {raw!r}.") from None
    return pairs


@limits_app.command("set")
def set_limits(
    max_concurrent: Annotated[
        int | None, typer.Option("--max-concurrent", min=0, help="Busy jobs at once, all providers; 0: no limit.")
    ] = None,
    per_user: Annotated[int | None, typer.Option("--per-user", min=0, help="Busy jobs per user; 0: no limit.")] = None,
    per_team: Annotated[int | None, typer.Option("--per-team", min=0, help="Busy jobs per team; 0: no limit.")] = None,
    per_provider: Annotated[
        int | None, typer.Option("--per-provider", min=0, help="Busy jobs per provider; 0: no limit.")
    ] = None,
    provider_limit: Annotated[
        list[str] | None,
        typer.Option("--provider-limit", help="A named provider's limit, e.g. replicate=4 (0 removes it); repeatable."),
    ] = None,
    max_queued_per_user: Annotated[
        int | None, typer.Option("--max-queued-per-user", min=0, help="Waiting jobs per user; 0: no limit.")
    ] = None,
    aging_seconds: Annotated[
        float | None, typer.Option("--aging-seconds", min=1, help="Seconds of waiting per priority step.")
    ] = None,
    role_priority: Annotated[
        list[str] | None,
        typer.Option("--role-priority", help="A role's starting priority, e.g. lead=10; repeatable."),
    ] = None,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Change the limits given (needs queue.manage); the others stay as they are."""
    changes: dict[str, Any] = {}
    for field, value in (
        ("max_concurrent", max_concurrent),
        ("max_concurrent_per_user", per_user),
        ("max_concurrent_per_team", per_team),
        ("max_concurrent_per_provider", per_provider),
        ("max_queued_per_user", max_queued_per_user),
    ):
        if value is not None:
            changes[field] = value or None
    if aging_seconds is not None:
        changes["aging_seconds"] = aging_seconds
    roles = _pairs(role_priority, "role priority", "lead=10")
    if roles:
        changes["role_priorities"] = roles
    providers = _pairs(provider_limit, "provider limit", "replicate=4")
    if not changes and not providers:
        raise CommandError(
            "Nothing to change: give --max-concurrent, --per-user, --per-team, --per-provider, --provider-limit, "
            "--max-queued-per-user, --aging-seconds or --role-priority."
        )
    with client(url, api_key) as api:
        if providers:
            # The server replaces the whole map: merge the providers named into the current one.
            current = dict(queue.get_limits(api).provider_limits)
            current.update(providers)
            changes["provider_limits"] = {name: cap for name, cap in current.items() if cap > 0}
        reply = queue.update_limits(api, changes)
    if as_json:
        print_json(reply)
        return
    console.print(_limits_table(reply))
