"""The Prometheus exposition served at ``/metrics`` (text format 0.0.4), written without a client library.

From the job store, read at each scrape (so every server process on one database reports the same):

* ``cloudtuner_jobs{provider,state}``: jobs by state (a gauge);
* ``cloudtuner_queue_depth{provider}``: queued jobs waiting to be started;
* ``cloudtuner_spend_usd{provider,hardware}``: the recorded cost of the jobs in the store;
* ``cloudtuner_cost_limit_usd``, ``cloudtuner_cost_limit_committed_usd{scope,provider,period}``:
  each enabled spending limit and what its current period holds.

From this process (``services.metrics_telemetry``):

* ``cloudtuner_provider_call_duration_seconds{provider,method}``: a histogram of provider calls;
* ``cloudtuner_provider_call_errors_total{provider,method,code}``;
* ``cloudtuner_webhooks_total{provider,outcome}``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from sqlalchemy import func, select

from cloudtuner import __version__
from cloudtuner.core.states import JobStatus
from cloudtuner.db.tables import JobRow
from cloudtuner.services.context import ServiceContext
from cloudtuner.services.metrics_telemetry import LATENCY_BUCKETS, telemetry
from cloudtuner.services.spending_limits import cost_limit_report

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Mapping[str, str | None]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{name}="{_escape(value or "")}"' for name, value in labels.items()) + "}"


def _number(value: float) -> str:
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, value: float, labels: Mapping[str, str | None] | None = None) -> None:
        self.lines.append(f"{name}{_labels(labels or {})} {_number(value)}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


async def _store_figures(ctx: ServiceContext) -> tuple[list[tuple[str, str, int]], list[tuple[str, str, float]]]:
    by_state = select(JobRow.provider, JobRow.status, func.count()).group_by(JobRow.provider, JobRow.status)
    spend = (
        select(JobRow.provider, JobRow.hardware, func.coalesce(func.sum(JobRow.cost_usd), 0.0))
        .where(JobRow.cost_usd > 0)
        .group_by(JobRow.provider, JobRow.hardware)
    )
    async with ctx.db.read() as session:
        states = [(str(p), str(s), int(n)) for p, s, n in (await session.execute(by_state)).all()]
        spent = [(str(p), str(h or "unknown"), float(v)) for p, h, v in (await session.execute(spend)).all()]
    return states, spent


def _histograms(writer: _Writer, ctx: ServiceContext) -> None:
    counters = telemetry(ctx)
    name = "cloudtuner_provider_call_duration_seconds"
    writer.family(name, "histogram", "Duration of calls to providers, by method.")
    for (provider, method), histogram in sorted(counters.provider_latency.items()):
        labels = {"provider": provider, "method": method}
        for bound, count in zip(LATENCY_BUCKETS, histogram.counts, strict=True):
            writer.sample(f"{name}_bucket", count, {**labels, "le": _number(bound)})
        writer.sample(f"{name}_bucket", histogram.total, {**labels, "le": "+Inf"})
        writer.sample(f"{name}_sum", histogram.sum, labels)
        writer.sample(f"{name}_count", histogram.total, labels)
    writer.family("cloudtuner_provider_call_errors_total", "counter", "Provider calls that failed, by error code.")
    for (provider, method, code), count in sorted(counters.provider_errors.items()):
        writer.sample(
            "cloudtuner_provider_call_errors_total", count, {"provider": provider, "method": method, "code": code}
        )
    writer.family("cloudtuner_webhooks_total", "counter", "Webhook deliveries received, by outcome.")
    for (provider, outcome), count in sorted(counters.webhooks.items()):
        writer.sample("cloudtuner_webhooks_total", count, {"provider": provider, "outcome": outcome})


def _state_samples(writer: _Writer, providers: Iterable[str], states: list[tuple[str, str, int]]) -> None:
    counts = {(provider, state): count for provider, state, count in states}
    names = sorted(set(providers) | {provider for provider, _, _ in states})
    writer.family("cloudtuner_jobs", "gauge", "Jobs in the store, by provider and state.")
    for provider in names:
        for state in JobStatus:
            writer.sample(
                "cloudtuner_jobs", counts.get((provider, state.value), 0), {"provider": provider, "state": state.value}
            )
    writer.family("cloudtuner_queue_depth", "gauge", "Queued jobs waiting to be started, by provider.")
    for provider in names:
        writer.sample(
            "cloudtuner_queue_depth", counts.get((provider, JobStatus.QUEUED.value), 0), {"provider": provider}
        )


async def exposition(ctx: ServiceContext) -> str:
    """Return the metrics in Prometheus text format (see the module docstring)."""
    states, spent = await _store_figures(ctx)
    limits = (await cost_limit_report(ctx)).limits
    writer = _Writer()
    writer.family("cloudtuner_info", "gauge", "This cloudtuner server.")
    writer.sample("cloudtuner_info", 1, {"version": __version__, "database": ctx.db.dialect.name})
    _state_samples(writer, ctx.providers.names, states)
    writer.family("cloudtuner_spend_usd", "gauge", "Recorded cost of the jobs in the store, US dollars.")
    for provider, hardware, value in sorted(spent):
        writer.sample("cloudtuner_spend_usd", value, {"provider": provider, "hardware": hardware})
    writer.family("cloudtuner_cost_limit_usd", "gauge", "Amount of each enabled spending limit, US dollars.")
    for status in limits:
        labels = {"scope": status.scope, "provider": status.provider, "period": status.period.value}
        writer.sample("cloudtuner_cost_limit_usd", status.amount, labels)
    writer.family("cloudtuner_cost_limit_committed_usd", "gauge", "Spent plus reserved in each limit's current period.")
    for status in limits:
        labels = {"scope": status.scope, "provider": status.provider, "period": status.period.value}
        writer.sample("cloudtuner_cost_limit_committed_usd", status.committed_usd, labels)
    _histograms(writer, ctx)
    return writer.text()
