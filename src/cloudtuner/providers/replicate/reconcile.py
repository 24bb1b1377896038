"""Finding the prediction made for a cloudtuner job, when the create call's reply was lost.

Replicate predictions carry no metadata, so a run is recognised by what it was sent:

1. **By id** (works in any process, also after a restart): the webhook URL's ``job_id`` query
   parameter, when Replicate shows the prediction's ``webhook``, or a ``--tracker_run_name`` of
   ``cloudtuner-<job id>`` in ``input.config_json`` (the name a run gets when the job names none).
2. **By text** (needs the expected ``config_json`` text): the text :func:`inputs.config_text`
   produced for the job, equal byte for byte. It is known for attempts this process made
   (:class:`AttemptBook`) or when the caller passes the job's ``RunRequest``.

Only predictions of the trainer models, created through the API (``source`` is not ``web``) and
no earlier than the window start (the attempt's dispatch time, else the time encoded in the job
id, minus :data:`CLOCK_SKEW`) are considered; they are read newest first until the window start is
passed or the list ends.

A prediction in the window that is neither attributed to another job nor comparable (it carries
no id, and either no expected text is known or its input is gone, as after Replicate's one-hour
data removal) *might* be the job's run: then nothing can be promised and the search raises
``ProviderUnavailableError`` instead of returning None.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cloudtuner.core.ids import is_sortable_id
from cloudtuner.providers.replicate.client import ReplicateHTTP
from cloudtuner.providers.replicate.mapping import config_run_name, parse_time, reference_of, run_config, run_name_for

CLOCK_SKEW = timedelta(minutes=1)
"""Allowed difference between this machine's clock and Replicate's ``created_at``."""

_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"


def job_id_time(job_id: str) -> datetime | None:
    """Return the creation time encoded in a cloudtuner job id (see ``core.ids``), or None."""
    if not is_sortable_id(job_id):
        return None
    millis = 0
    for char in job_id[:10]:
        millis = millis * 32 + _CROCKFORD.index(char)
    return datetime.fromtimestamp(millis / 1000, UTC)


def aware(value: datetime | None) -> datetime | None:
    """Return ``value`` as an aware datetime (a naive one is taken as UTC)."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


@dataclass
class Attempt:
    """One ``run_job`` call of this process: what it sent and, once known, the prediction made."""

    job_id: str
    config_text: str
    not_before: datetime
    prediction_id: str | None = None
    recorded: float = field(default_factory=time.monotonic)
    settles_at: float | None = None
    """When the create call got no reply: the (provider's monotonic) time until which Replicate may
    still be making the run, so that finding none proves nothing."""


class AttemptBook:
    """Bounded in-memory record of recent ``run_job`` attempts and which prediction belongs to which job.

    It only ever *adds* certainty: everything it knows can also be derived after a restart for runs
    named ``cloudtuner-<job id>``; for other runs it is what makes a text match possible.
    """

    def __init__(self, max_entries: int = 2048, ttl_seconds: float = 7 * 86400.0) -> None:
        self._attempts: OrderedDict[str, Attempt] = OrderedDict()
        self._owners: dict[str, str] = {}
        self._max = max_entries
        self._ttl = ttl_seconds

    def begin(self, job_id: str, config_text: str, not_before: datetime) -> None:
        """Record that a prediction for ``job_id`` is about to be created with this config text."""
        previous = self._attempts.pop(job_id, None)
        if previous is not None and previous.prediction_id is not None:
            self._owners.pop(previous.prediction_id, None)
        self._attempts[job_id] = Attempt(job_id, config_text, not_before)
        self._trim()

    def created(self, job_id: str, prediction_id: str) -> None:
        """Record that ``prediction_id`` is the run of ``job_id``."""
        attempt = self._attempts.get(job_id)
        if attempt is not None:
            attempt.prediction_id = prediction_id
            self._attempts.move_to_end(job_id)
        self._owners[prediction_id] = job_id
        self._trim()

    def unsettled(self, job_id: str, until: float) -> None:
        """Record that ``job_id``'s create call got no reply: its run may appear until ``until``."""
        attempt = self._attempts.get(job_id)
        if attempt is not None:
            attempt.settles_at = until

    def get(self, job_id: str) -> Attempt | None:
        """Return the latest attempt for ``job_id``, if this process made one recently."""
        attempt = self._attempts.get(job_id)
        if attempt is not None and time.monotonic() - attempt.recorded > self._ttl:
            return None
        return attempt

    def owner_of(self, prediction_id: str) -> str | None:
        """Return the job a prediction is known to belong to."""
        return self._owners.get(prediction_id)

    def pending_job_for(self, config_text: str) -> str | None:
        """Return the one job whose unanswered attempt sent this config text (None if none or several)."""
        found = [a.job_id for a in self._attempts.values() if a.prediction_id is None and a.config_text == config_text]
        return found[0] if len(found) == 1 else None

    def _trim(self) -> None:
        while len(self._attempts) > self._max:
            _, dropped = self._attempts.popitem(last=False)
            if dropped.prediction_id is not None:
                self._owners.pop(dropped.prediction_id, None)
        while len(self._owners) > self._max * 2:
            self._owners.pop(next(iter(self._owners)))


@dataclass
class Search:
    """The state of one look for ``job_id``'s prediction while pages are read."""

    job_id: str
    expected_text: str | None
    trainer_models: frozenset[str]
    not_before: datetime | None
    book: AttemptBook
    by_id: list[dict[str, Any]] = field(default_factory=list)
    by_text: list[dict[str, Any]] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    passed_window: bool = False

    def consider(self, prediction: dict[str, Any], created_at: datetime | None) -> None:
        """Sort one prediction (newest first) into a match, a candidate, an unknown or nothing."""
        if self.not_before is not None and created_at is not None and created_at < self.not_before:
            self.passed_window = True
            return
        if prediction.get("model") not in self.trainer_models or prediction.get("source") == "web":
            return
        prediction_id = str(prediction.get("id", ""))
        reference = reference_of(prediction) or self.book.owner_of(prediction_id)
        if reference == self.job_id or config_run_name(run_config(prediction)) == run_name_for(self.job_id):
            self.by_id.append(prediction)
            return
        if reference is not None:
            return
        run_input = prediction.get("input")
        text = run_input.get("config_json") if isinstance(run_input, dict) else None
        if self.expected_text is not None and isinstance(text, str):
            if text == self.expected_text:
                self.by_text.append(prediction)
            return
        self.unknown.append(prediction_id)

    def best(self) -> dict[str, Any] | None:
        """Return the job's prediction: an id match first, else the oldest text match."""
        if self.by_id:
            return self.by_id[-1]
        if self.by_text:
            return self.by_text[-1]
        return None


async def scan_predictions(http: ReplicateHTTP, search: Search, *, max_pages: int) -> bool:
    """Read predictions newest first into ``search``; return True if the window was read completely.

    The listing asks Replicate for ``created_after`` the window start, and also stops by itself
    at the first prediction older than it (in case the filter is not applied).

    Raises:
        ProviderUnavailableError: a page could not be read.
        ProviderAuthError: no token or a refused one.
    """
    params = None
    if search.not_before is not None:
        params = {"created_after": search.not_before.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")}
    async for results, more in http.pages(
        "predictions", params=params, max_pages=max_pages, action="list training runs"
    ):
        for prediction in results:
            search.consider(prediction, parse_time(prediction.get("created_at")))
        if search.passed_window or not more:
            return True
    return False
