"""Calendar periods of spending limits: month ends, leap years, weeks, time zones and DST changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cloudtuner.schemas.costs import CostLimit, LimitPeriod
from cloudtuner.services.costs_periods import local_days, period_window


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("moment", "start", "end"),
    [
        (utc(2027, 1, 31, 23, 59, 59), utc(2027, 1, 1), utc(2027, 2, 1)),  # the last second of January
        (utc(2027, 2, 1), utc(2027, 2, 1), utc(2027, 3, 1)),  # its first second belongs to February
        (utc(2028, 2, 29, 12), utc(2028, 2, 1), utc(2028, 3, 1)),  # a leap day
        (utc(2027, 12, 31, 23, 0), utc(2027, 12, 1), utc(2028, 1, 1)),  # the year turns
        (utc(2027, 4, 30, 8), utc(2027, 4, 1), utc(2027, 5, 1)),  # a 30-day month
    ],
)
def test_months_in_utc(moment: datetime, start: datetime, end: datetime) -> None:
    window = period_window(LimitPeriod.MONTHLY, "UTC", moment)
    assert (window.start, window.end) == (start, end)
    assert window.contains(moment) and not window.contains(end)


def test_a_month_end_comes_earlier_in_utc_east_of_greenwich() -> None:
    # 23:30 UTC on 31 January is 08:30 on 1 February in Tokyo: February there, January in UTC.
    moment = utc(2027, 1, 31, 23, 30)
    tokyo = period_window(LimitPeriod.MONTHLY, "Asia/Tokyo", moment)
    assert (tokyo.start, tokyo.end) == (utc(2027, 1, 31, 15), utc(2027, 2, 28, 15))
    assert period_window(LimitPeriod.MONTHLY, "UTC", moment).start == utc(2027, 1, 1)


def test_changing_the_time_zone_moves_the_boundaries_of_the_same_moment() -> None:
    moment = utc(2027, 6, 15, 2, 0)  # 22:00 on 14 June in New York
    assert period_window(LimitPeriod.DAILY, "UTC", moment).start == utc(2027, 6, 15)
    new_york = period_window(LimitPeriod.DAILY, "America/New_York", moment)
    assert (new_york.start, new_york.end) == (utc(2027, 6, 14, 4), utc(2027, 6, 15, 4))


def test_the_day_clocks_go_forward_is_23_hours_long() -> None:
    window = period_window(LimitPeriod.DAILY, "Europe/Berlin", utc(2027, 3, 28, 12))
    assert (window.start, window.end) == (utc(2027, 3, 27, 23), utc(2027, 3, 28, 22))
    assert window.end - window.start == timedelta(hours=23)


def test_the_day_clocks_go_back_is_25_hours_long() -> None:
    window = period_window(LimitPeriod.DAILY, "Europe/Berlin", utc(2027, 10, 31, 1, 30))  # the repeated hour
    assert (window.start, window.end) == (utc(2027, 10, 30, 22), utc(2027, 10, 31, 23))
    assert window.end - window.start == timedelta(hours=25)


def test_a_month_that_spans_a_dst_change_ends_at_local_midnight() -> None:
    window = period_window(LimitPeriod.MONTHLY, "America/New_York", utc(2027, 3, 20))
    assert window.start == utc(2027, 3, 1, 5)  # midnight EST (UTC-5)
    assert window.end == utc(2027, 4, 1, 4)  # midnight EDT (UTC-4)


def test_a_zone_that_skips_midnight_starts_the_day_at_the_change() -> None:
    # Santiago moved its clocks from 00:00 to 01:00 on 8 September 2024: that day began at 04:00 UTC.
    window = period_window(LimitPeriod.DAILY, "America/Santiago", utc(2024, 9, 8, 12))
    assert window.start == utc(2024, 9, 8, 4)
    assert window.end == utc(2024, 9, 9, 3)
    before = period_window(LimitPeriod.DAILY, "America/Santiago", utc(2024, 9, 8, 3, 59))
    assert before.end == window.start


@pytest.mark.parametrize(
    ("moment", "start"),
    [
        (utc(2027, 1, 3, 23), utc(2026, 12, 28)),  # a Sunday: the week began on Monday, last year
        (utc(2027, 1, 4), utc(2027, 1, 4)),  # Monday 00:00 starts a new week
        (utc(2027, 3, 3), utc(2027, 3, 1)),  # across the end of February
    ],
)
def test_weeks_run_monday_to_sunday(moment: datetime, start: datetime) -> None:
    window = period_window(LimitPeriod.WEEKLY, "UTC", moment)
    assert (window.start, window.end) == (start, start + timedelta(days=7))


def test_a_week_with_a_dst_change_is_167_hours_long() -> None:
    window = period_window(LimitPeriod.WEEKLY, "Europe/Berlin", utc(2027, 3, 26))
    assert window.start == utc(2027, 3, 21, 23) and window.end - window.start == timedelta(hours=167)


def test_local_days_of_a_range() -> None:
    days = local_days(utc(2027, 1, 30, 23, 30), utc(2027, 2, 1, 1), "Europe/Berlin")
    assert [day.isoformat() for day in days] == ["2027-01-31", "2027-02-01"]


def test_a_limit_accepts_the_words_of_the_seeds() -> None:
    limit = CostLimit.model_validate({"amount": 25, "period": "Day", "action": "BLOCK"})
    assert (limit.period, limit.action.value, limit.enabled) == (LimitPeriod.DAILY, "block", True)
    assert CostLimit.model_validate({"amount": 1, "period": "daily"}).action.value == "warn"
