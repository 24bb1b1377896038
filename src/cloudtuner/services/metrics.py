"""Job and cost metrics for GET /api/metrics: counts, spend, durations and success rate over a range.

The range is of submission times (``created_at``), like spending limits: a job's spend lands on
the day it was submitted. Days are calendar days in the Cloud settings' time zone. Counts and sums
by provider, status and hardware are grouped in SQL; spend per day and durations are worked out
here from the range's jobs (times differ too much between SQLite and PostgreSQL to group by in SQL).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from cloudtuner.core.errors import InvalidRequestError
from cloudtuner.core.states import JobStatus
from cloudtuner.db.tables import JobRow
from cloudtuner.schemas.costs import DurationStats, MetricsResponse, SpendBucket
from cloudtuner.services.context import ServiceContext
from cloudtuner.services.costs_periods import local_days, local_midnight
from cloudtuner.services.settings_documents import get_cloud_settings

MAX_RANGE_DAYS = 366
DEFAULT_DAYS = 30


def _round(value: float) -> float:
    return round(value, 4)


async def metric_range(
    ctx: ServiceContext, *, days: int | None, since: datetime | None, until: datetime | None
) -> tuple[datetime, datetime, str]:
    """Return ``(since, until, time zone)``: the given bounds, or the last ``days`` calendar days up to now.

    Raises:
        InvalidRequestError: the range is empty, reversed or longer than a year.
    """
    time_zone = (await get_cloud_settings(ctx)).time_zone
    now = ctx.clock.now()
    end = until or now
    if since is None:
        count = days or DEFAULT_DAYS
        today = end.astimezone(ZoneInfo(time_zone)).date()
        start = local_midnight(today - timedelta(days=count - 1), ZoneInfo(time_zone))
    else:
        start = since
    if start.tzinfo is None or end.tzinfo is None:
        raise InvalidRequestError("Give since and until with a time zone, e.g. 2026-11-01T00:00:00Z.")
    if start >= end:
        raise InvalidRequestError("The range is empty: since must be before until.")
    if end - start > timedelta(days=MAX_RANGE_DAYS):
        raise InvalidRequestError(f"The range is longer than {MAX_RANGE_DAYS} days; ask for a shorter one.")
    return start, end, time_zone


def _durations(rows: Iterable[tuple[datetime, datetime | None, datetime]]) -> DurationStats:
    queue: list[float] = []
    run: list[float] = []
    total: list[float] = []
    count = 0
    for created, started, finished in rows:
        count += 1
        total.append((finished - created).total_seconds())
        if started is not None:
            queue.append((started - created).total_seconds())
            run.append((finished - started).total_seconds())

    def mean(values: list[float]) -> float | None:
        return round(sum(values) / len(values), 3) if values else None

    return DurationStats(
        average_queue_seconds=mean(queue),
        average_run_seconds=mean(run),
        average_total_seconds=mean(total),
        finished_jobs=count,
    )


async def job_metrics(
    ctx: ServiceContext,
    *,
    days: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    provider: str | None = None,
) -> MetricsResponse:
    """Return the metrics of the jobs submitted in a range (default: the last 30 calendar days).

    Raises:
        InvalidRequestError: the range is not valid.
        UnknownProviderError: ``provider`` names no provider.
    """
    if provider is not None:
        ctx.providers.get(provider)
    start, end, time_zone = await metric_range(ctx, days=days, since=since, until=until)
    conditions = [JobRow.created_at >= start, JobRow.created_at < end]
    if provider is not None:
        conditions.append(JobRow.provider == provider)
    grouped = (
        select(
            JobRow.provider, JobRow.status, JobRow.hardware, func.count(), func.coalesce(func.sum(JobRow.cost_usd), 0.0)
        )
        .where(*conditions)
        .group_by(JobRow.provider, JobRow.status, JobRow.hardware)
    )
    terminal = [status.value for status in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)]
    finished = select(JobRow.provider, JobRow.created_at, JobRow.started_at, JobRow.finished_at, JobRow.cost_usd).where(
        *conditions, JobRow.status.in_(terminal), JobRow.finished_at.is_not(None)
    )
    # Every job of the range, as in the provider and hardware buckets: a day's `jobs` counts the
    # jobs submitted that day, not only those that have cost something yet.
    spent = select(JobRow.created_at, JobRow.cost_usd).where(*conditions)
    async with ctx.db.read() as session:
        groups = (await session.execute(grouped)).all()
        finished_rows = (await session.execute(finished)).all()
        spent_rows = (await session.execute(spent)).all()

    by_status: dict[str, int] = defaultdict(int)
    by_provider: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    spend_provider: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    spend_hardware: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    for provider_name, status, hardware, count, cost in groups:
        by_status[status] += count
        by_provider[provider_name][status] += count
        for table, key in ((spend_provider, provider_name), (spend_hardware, hardware or "unknown")):
            table[key][0] += float(cost)
            table[key][1] += count
    zone = ZoneInfo(time_zone)
    per_day: dict[str, list[float]] = {day.isoformat(): [0.0, 0] for day in local_days(start, end, time_zone)}
    for created, cost in spent_rows:
        bucket = per_day.setdefault(created.astimezone(zone).date().isoformat(), [0.0, 0])
        bucket[0] += float(cost or 0.0)
        bucket[1] += 1
    completed, failed = by_status.get(JobStatus.COMPLETED.value, 0), by_status.get(JobStatus.FAILED.value, 0)
    finished_by_provider: dict[str, list[tuple[datetime, datetime | None, datetime]]] = defaultdict(list)
    for provider_name, created, started, ended, _cost in finished_rows:
        if ended is not None:
            finished_by_provider[provider_name].append((created, started, ended))

    def buckets(table: dict[str, list[float]], *, sort_by_key: bool = False) -> list[SpendBucket]:
        items = sorted(table.items()) if sort_by_key else sorted(table.items(), key=lambda item: -item[1][0])
        return [SpendBucket(key=key, spent_usd=_round(value[0]), jobs=int(value[1])) for key, value in items]

    return MetricsResponse(
        since=start,
        until=end,
        time_zone=time_zone,
        jobs_total=sum(by_status.values()),
        jobs_by_status=dict(sorted(by_status.items())),
        jobs_by_provider={name: dict(sorted(counts.items())) for name, counts in sorted(by_provider.items())},
        success_rate=round(completed / (completed + failed), 4) if completed + failed else None,
        total_spent_usd=_round(sum(value[0] for value in spend_provider.values())),
        spend_by_day=buckets(per_day, sort_by_key=True),
        spend_by_provider=buckets(spend_provider),
        spend_by_hardware=buckets(spend_hardware),
        durations=_durations(row for rows in finished_by_provider.values() for row in rows),
        durations_by_provider={name: _durations(rows) for name, rows in sorted(finished_by_provider.items())},
    )
