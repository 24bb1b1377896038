"""Calendar periods of spending limits: which day, week or month a moment belongs to, in a time zone.

A period starts at local midnight (a week on Monday, a month on its first day) in the Cloud
settings' time zone and ends when the next one starts, so a day can be 23 or 25 hours long where
daylight saving time changes. Boundaries are returned as aware UTC datetimes, the way the job
store keeps times. Nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from cloudtuner.schemas.costs import LimitPeriod


@dataclass(frozen=True)
class PeriodWindow:
    """One calendar period: ``start <= t < end`` (UTC), and the time zone it was counted in."""

    period: LimitPeriod
    start: datetime
    end: datetime
    time_zone: str

    def contains(self, moment: datetime) -> bool:
        """Return True if ``moment`` falls in this period."""
        return self.start <= moment < self.end


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    """Return the first moment of ``day`` in ``zone``, in UTC.

    Where a zone skips midnight (a DST change at 00:00), the day starts at the first local time
    that exists: a skipped wall time read with ``fold=0`` (PEP 495) is the moment of the change.
    Where midnight happens twice, the day starts at the first.
    """
    return datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC)


def _first_day(period: LimitPeriod, day: date) -> date:
    if period is LimitPeriod.DAILY:
        return day
    if period is LimitPeriod.WEEKLY:
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def _next_first_day(period: LimitPeriod, first: date) -> date:
    if period is LimitPeriod.DAILY:
        return first + timedelta(days=1)
    if period is LimitPeriod.WEEKLY:
        return first + timedelta(days=7)
    return date(first.year + first.month // 12, first.month % 12 + 1, 1)


def period_window(period: LimitPeriod, time_zone: str, moment: datetime) -> PeriodWindow:
    """Return the calendar period of ``period`` kind that contains ``moment`` (aware), in ``time_zone``.

    Raises:
        ZoneInfoNotFoundError: ``time_zone`` is not a time zone this machine knows.
    """
    zone = ZoneInfo(time_zone)
    first = _first_day(period, moment.astimezone(zone).date())
    start, end = local_midnight(first, zone), local_midnight(_next_first_day(period, first), zone)
    # Where midnight happens twice, the hour between them reads as the day before: move on.
    while moment >= end:
        first = _next_first_day(period, first)
        start, end = end, local_midnight(_next_first_day(period, first), zone)
    return PeriodWindow(period=period, start=start, end=end, time_zone=time_zone)


def local_days(since: datetime, until: datetime, time_zone: str) -> list[date]:
    """Return the calendar days in ``time_zone`` that ``[since, until)`` touches, oldest first."""
    zone = ZoneInfo(time_zone)
    first, last = since.astimezone(zone).date(), (until - timedelta(microseconds=1)).astimezone(zone).date()
    days = []
    day = first
    while day <= last:
        days.append(day)
        day += timedelta(days=1)
    return days
