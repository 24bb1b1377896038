"""`cloudtuner cost ...`: spend, spending limits and hardware prices."""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import typer
from rich.table import Table

from cloudtuner.cli.common import ApiKeyOption, JsonOption, UrlOption, client, console, money, print_json
from cloudtuner.schemas.costs import (
    CostLimitReport,
    CostLimitStatus,
    HardwareListResponse,
    LimitAction,
    LimitPeriod,
    MetricsResponse,
)

app = typer.Typer(help="What jobs cost: spend, spending limits and hardware prices.", no_args_is_help=True)
limit_app = typer.Typer(help="Spending limits: global, or per provider.", no_args_is_help=True)
app.add_typer(limit_app, name="limit")

ProviderOption = Annotated[
    str | None, typer.Option("--provider", "-p", help="A provider's limit (default: the global one).")
]


def _limit_path(provider: str | None) -> str:
    return f"/api/cloud/providers/{provider.strip().lower()}" if provider else "/api/cloud/settings"


def _local_time(moment: datetime, time_zone: str) -> str:
    """Return ``moment`` in the limit's time zone (where its periods start at midnight), e.g.
    ``2026-12-01 00:00 Europe/Berlin``; in UTC if the zone is unknown here."""
    try:
        zone: tzinfo = ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        zone, time_zone = UTC, "UTC"
    return f"{moment.astimezone(zone):%Y-%m-%d %H:%M} {time_zone}"


def _limits_table(limits: list[CostLimitStatus]) -> Table:
    table = Table(show_edge=False, pad_edge=False)
    for column in ("LIMIT", "PERIOD", "ACTION", "SPENT", "RESERVED", "OF", "USED", "RESETS"):
        table.add_column(column)
    for status in limits:
        used = f"{status.percent_used:.0f} %"
        table.add_row(
            status.provider or "global",
            status.period.value,
            status.action.value,
            money(status.spent_usd),
            money(status.reserved_usd),
            money(status.amount),
            f"[red]{used}[/]" if status.exceeded else used,
            _local_time(status.resets_at, status.time_zone),
        )
    return table


@app.command()
def show(
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    provider: Annotated[str | None, typer.Option("--provider", "-p", help="Only this provider.")] = None,
    days: Annotated[int, typer.Option(min=1, max=366, help="Spend over the last N days.")] = 30,
    as_json: JsonOption = False,
) -> None:
    """Show spend over the last days and how much of each spending limit is used."""
    params: dict[str, Any] = {"days": days}
    limit_params: dict[str, Any] = {}
    if provider:
        params["provider"] = limit_params["provider"] = provider
    with client(url, api_key) as api:
        limits = api.request("GET", "/api/cloud/metrics/cost-limit", params=limit_params)
        report = CostLimitReport.model_validate(limits)
        figures = MetricsResponse.model_validate(api.request("GET", "/api/metrics", params=params))
    if as_json:
        print_json({"cost_limit": report.model_dump(mode="json"), "metrics": figures.model_dump(mode="json")})
        return
    console.print(
        f"Spent {money(figures.total_spent_usd)} on {figures.jobs_total} job(s) in the last {days} day(s) "
        f"({figures.time_zone})."
    )
    for title, buckets in (("Provider", figures.spend_by_provider), ("Hardware", figures.spend_by_hardware)):
        if buckets:
            table = Table(show_edge=False, pad_edge=False)
            for column in (title.upper(), "JOBS", "SPENT"):
                table.add_column(column)
            for bucket in buckets:
                table.add_row(bucket.key, str(bucket.jobs), money(bucket.spent_usd))
            console.print(table)
    if report.limits:
        console.print(_limits_table(report.limits))
    else:
        console.print("No spending limit is set. Set one with `cloudtuner cost limit set --amount 25 --period daily`.")


@app.command()
def hardware(
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    provider: Annotated[str, typer.Option("--provider", "-p", help="Whose hardware.")] = "replicate",
    as_json: JsonOption = False,
) -> None:
    """List a provider's hardware: GPU type and count, VRAM, and price."""
    with client(url, api_key) as api:
        reply = HardwareListResponse.model_validate(api.request("GET", f"/api/cloud/providers/{provider}/hardware"))
    if as_json:
        print_json(reply)
        return
    table = Table(show_edge=False, pad_edge=False)
    for column in ("HARDWARE", "GPU", "VRAM", "$/HOUR", "$/SECOND", "PRICE FROM"):
        table.add_column(column)
    for item in reply.hardware:
        gpu = f"{item.gpu_count}x {item.gpu_type}" if item.gpu_type else "-"
        vram = f"{item.total_vram_gb:g} GB" if item.total_vram_gb is not None else "-"
        name = item.sku + (" (default)" if item.default else "") + ("" if item.available else " [dim](no trainer)[/]")
        table.add_row(name, gpu, vram, money(item.price_per_hour), f"{item.price_per_second:.6f}", item.source)
    console.print(table if reply.hardware else f"{provider} lists no hardware prices.")


@limit_app.command("set")
def set_limit(
    amount: Annotated[float, typer.Option("--amount", "-a", help="US dollars per period.", min=0.01)],
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    period: Annotated[LimitPeriod, typer.Option(help="Calendar period.")] = LimitPeriod.MONTHLY,
    action: Annotated[
        LimitAction, typer.Option(help="warn: accept with a warning; block: refuse the submission.")
    ] = LimitAction.WARN,
    provider: ProviderOption = None,
    as_json: JsonOption = False,
) -> None:
    """Set the global spending limit, or a provider's with --provider."""
    body = {"cost_limit": {"enabled": True, "amount": amount, "period": period.value, "action": action.value}}
    with client(url, api_key) as api:
        reply = api.request("PUT", _limit_path(provider), json=body)
    if as_json:
        print_json(reply)
        return
    where = f"{provider} jobs" if provider else "all providers"
    console.print(f"Spending limit on {where}: {money(amount)} {period.value}, action {action.value}.")


@limit_app.command("clear")
def clear_limit(
    url: UrlOption = None, api_key: ApiKeyOption = None, provider: ProviderOption = None, as_json: JsonOption = False
) -> None:
    """Remove the global spending limit, or a provider's with --provider."""
    with client(url, api_key) as api:
        reply = api.request("PUT", _limit_path(provider), json={"cost_limit": None})
    if as_json:
        print_json(reply)
        return
    console.print(f"Removed the spending limit on {provider + ' jobs' if provider else 'all providers'}.")
