"""Pure helpers of the HTTP layer and the reconcile bookkeeping."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest

from cloudtuner.core.errors import ProviderAuthError
from cloudtuner.core.ids import new_sortable_id
from cloudtuner.providers.replicate.client import RetryPolicy, clean_token, invalid_token_message, retry_after_seconds
from cloudtuner.providers.replicate.reconcile import AttemptBook, Search, job_id_time

TRAINER = frozenset({"simpletuner/advanced-trainer"})


def test_retry_after_forms() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds(format_datetime(now + timedelta(seconds=7), usegmt=True), now=now) == 7.0
    assert retry_after_seconds(format_datetime(now - timedelta(seconds=7), usegmt=True), now=now) == 0.0
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None


def test_backoff_grows_with_jitter_and_a_ceiling() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=4.0)
    for retry_number, ceiling in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (8, 4.0)]:
        waits = [policy.backoff(retry_number) for _ in range(200)]
        assert all(ceiling / 2 <= w <= ceiling for w in waits)
        assert len(set(waits)) > 1


def test_tokens() -> None:
    assert clean_token("  r8_abc\n") == "r8_abc"
    with pytest.raises(ProviderAuthError, match="REPLICATE_API_TOKEN not set"):
        clean_token(None)
    with pytest.raises(ProviderAuthError, match="REPLICATE_API_TOKEN not set"):
        clean_token(" \n")
    with pytest.raises(ProviderAuthError, match="Invalid token") as caught:
        clean_token("r8_a b")
    assert "r8_a b" not in caught.value.message
    assert "does not start with r8_" in invalid_token_message("abc")
    message = invalid_token_message("r8_secretvalue")
    assert "r8_secretvalue" not in message and "Invalid token" in message and "spaces" in message


def test_job_id_time() -> None:
    at = datetime(2026, 2, 3, 4, 5, 6, 789000, tzinfo=UTC)
    job_id = new_sortable_id(now_ms=int(at.timestamp() * 1000))
    assert job_id_time(job_id) == at
    assert job_id_time("not-a-job-id") is None


def test_attempt_book() -> None:
    book = AttemptBook(max_entries=2)
    now = datetime.now(UTC)
    book.begin("a", "text-a", now)
    book.begin("b", "same", now)
    book.begin("c", "same", now)
    assert book.get("a") is None  # trimmed to two entries
    assert book.pending_job_for("same") is None  # two pending jobs sent this text
    book.created("b", "p-b")
    assert book.pending_job_for("same") == "c"
    assert book.owner_of("p-b") == "b"
    attempt = book.get("b")
    assert attempt is not None and attempt.prediction_id == "p-b"


def prediction(pid: str, run_name: str | None, created: datetime, **fields: Any) -> dict[str, Any]:
    config = {"--tracker_run_name": run_name} if run_name else {}
    return {
        "id": pid,
        "model": "simpletuner/advanced-trainer",
        "input": {"config_json": json.dumps(config)},
        "created_at": created.isoformat(),
        **fields,
    }


def test_search_rules() -> None:
    now = datetime.now(UTC)
    job = new_sortable_id()
    other = new_sortable_id()
    book = AttemptBook()
    book.created("someone-elses", "p-claimed")
    search = Search(job, None, TRAINER, now - timedelta(minutes=1), book)
    rows = [
        prediction("p-web", None, now, source="web"),
        prediction("p-model", None, now, model="other/model"),
        prediction("p-other-job", f"cloudtuner-{other}", now),
        prediction("p-claimed", "custom", now),
        prediction("p-unknown", "custom", now),
        prediction("p-mine", f"cloudtuner-{job}", now),
        prediction("p-old", None, now - timedelta(minutes=5)),
    ]
    for row in rows:
        search.consider(row, datetime.fromisoformat(row["created_at"]))
    assert [p["id"] for p in search.by_id] == ["p-mine"]
    assert search.unknown == ["p-unknown"]
    assert search.passed_window
    best = search.best()
    assert best is not None and best["id"] == "p-mine"


def test_search_by_text_prefers_the_oldest_and_skips_removed_input() -> None:
    now = datetime.now(UTC)
    text = json.dumps({"--tracker_run_name": "custom"})
    search = Search(new_sortable_id(), text, TRAINER, None, AttemptBook())
    for pid in ("p-new", "p-old"):
        search.consider(prediction(pid, "custom", now), now)
    search.consider(prediction("p-different", "else", now), now)
    search.consider({"id": "p-removed", "model": "simpletuner/advanced-trainer", "input": None}, now)
    best = search.best()
    assert best is not None and best["id"] == "p-old"
    assert search.unknown == ["p-removed"]
