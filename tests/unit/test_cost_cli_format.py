"""`cloudtuner cost show`: a limit's reset time is shown in the limit's own time zone."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.console import Console

from cloudtuner.cli.cost import _limits_table, _local_time
from cloudtuner.schemas.costs import CostLimitStatus


def test_the_reset_time_is_shown_where_the_period_starts_at_midnight() -> None:
    resets = datetime(2026, 11, 30, 23, 0, tzinfo=UTC)
    assert _local_time(resets, "Europe/Berlin") == "2026-12-01 00:00 Europe/Berlin"
    assert _local_time(resets, "UTC") == "2026-11-30 23:00 UTC"
    assert _local_time(resets, "Not/AZone") == "2026-11-30 23:00 UTC"


def test_the_limits_table_names_the_zone() -> None:
    status = CostLimitStatus.model_validate(
        {
            "scope": "provider",
            "provider": "replicate",
            "enabled": True,
            "amount": 25.0,
            "period": "daily",
            "action": "block",
            "time_zone": "America/New_York",
            "period_start": "2026-11-22T05:00:00Z",
            "resets_at": "2026-11-23T05:00:00Z",
            "spent_usd": 1.0,
            "reserved_usd": 0.5,
            "committed_usd": 1.5,
            "remaining_usd": 23.5,
            "percent_used": 6.0,
            "exceeded": False,
        }
    )
    console = Console(width=200, record=True)
    console.print(_limits_table([status]))
    assert "2026-11-23 00:00 America/New_York" in console.export_text()
