"""Predictions and trainings ("runs"): outcome scripts, run records and their JSON shapes.

A run moves ``starting → processing → succeeded | failed | canceled`` (``aborted`` only through a
``Cancel-After`` deadline or an explicit control call).  Timing and outcome come from a
:class:`RunScript` resolved at creation; the state module drives the transitions.  Every change
records webhook event names in :attr:`Run.pending_events` for the webhook planner.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from .config import FakeConfig
from .util import iso

Outcome = Literal["succeed", "fail", "hang"]
RunKind = Literal["prediction", "training"]
TERMINAL = frozenset({"succeeded", "failed", "canceled", "aborted"})
STATUSES = ("starting", "processing", *sorted(TERMINAL))
DEFAULT_ERROR = "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 44.53 GiB total capacity)"


class _Unset:
    """Marker for "no output override" (``None`` is a valid scripted output)."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()


@dataclass
class RunScript:
    """How one run behaves.  ``None`` fields take the :class:`FakeConfig` default.

    * ``outcome``: ``succeed``, ``fail`` (with ``error``) or ``hang`` (stays ``processing``).
    * ``starting_seconds``/``processing_seconds``: time spent in each state; ``hold_starting``
      keeps the run ``starting`` until a control call moves it.
    * ``log_steps``/``total_steps``: number of progress lines and their ``total``.
    * ``stop_at``: for ``fail``/``hang``, the share of the log timeline shown before the logs stop.
    * ``predict_time``/``total_time``: reported metrics (default: measured wall time).
    * ``output``: replaces the computed output on success.
    * ``kind``, ``model``, ``webhook_contains`` (substring of the webhook URL) and
      ``input_contains`` (substring of the JSON text of ``input`` or of one of its string values,
      e.g. of the ``config_json`` text): when queued, the script is
      used by the first new run that matches all of them that are set.
    """

    outcome: Outcome = "succeed"
    starting_seconds: float | None = None
    processing_seconds: float | None = None
    hold_starting: bool = False
    log_steps: int | None = None
    total_steps: int | None = None
    stop_at: float = 0.6
    predict_time: float | None = None
    total_time: float | None = None
    error: str | None = None
    output: Any = UNSET
    kind: RunKind | None = None
    model: str | None = None
    webhook_contains: str | None = None
    input_contains: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunScript:
        """Build from JSON; raises ``ValueError`` on unknown keys or a bad outcome."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown script field(s): {', '.join(unknown)}")
        if data.get("outcome", "succeed") not in ("succeed", "fail", "hang"):
            raise ValueError("outcome must be succeed, fail or hang")
        if data.get("kind") not in (None, "prediction", "training"):
            raise ValueError("kind must be prediction or training")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        """JSON view; ``output`` is omitted when not overridden."""
        out = dataclasses.asdict(self)
        if self.output is UNSET:
            del out["output"]
        return out

    def matches(self, kind: str, model: str, webhook: str | None, input_text: str) -> bool:
        """Whether a queued script applies to a new run (see the class docstring)."""
        return (
            (self.kind is None or self.kind == kind)
            and (self.model is None or self.model == model)
            and (self.webhook_contains is None or (webhook is not None and self.webhook_contains in webhook))
            and (self.input_contains is None or self.input_contains in input_text)
        )


@dataclass
class Run:
    """One prediction or training, with its lifecycle bookkeeping."""

    id: str
    kind: RunKind
    seq: int
    model: str
    version: str
    input: dict[str, Any]
    script: RunScript
    starting_seconds: float | None
    processing_seconds: float
    log_steps: int
    created_at: float
    created_mono: float
    trainer: bool
    webhook: str | None = None
    events_filter: tuple[str, ...] = ()
    destination: str | None = None
    deadline: float | None = None
    status: str = "starting"
    output: Any = None
    error: str | None = None
    lines: list[str] = field(default_factory=list)
    timeline: list[tuple[float, str]] = field(default_factory=list)
    timeline_pos: int = 0
    started_at: float | None = None
    started_mono: float | None = None
    completed_at: float | None = None
    completed_mono: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    pending_events: set[str] = field(default_factory=set)
    delivery: str | None = None
    """``delivering``, ``delivered`` or ``failed`` once the trainer uploads its outputs (``delivery.py``)."""
    delivered: dict[str, str] = field(default_factory=dict)
    """Paths uploaded by the delivery, with their SHA-256."""
    delivery_error: str | None = None

    @property
    def terminal(self) -> bool:
        """True once the run reached a final status."""
        return self.status in TERMINAL

    def append(self, *lines: str) -> None:
        """Add log lines and note a ``logs`` event."""
        if lines:
            self.lines.extend(lines)
            self.pending_events.add("logs")

    def start(self, wall: float, mono: float) -> None:
        """``starting → processing``; notes the ``start`` event."""
        self.status = "processing"
        self.started_at, self.started_mono = wall, mono
        self.pending_events.add("start")

    def emit_due_lines(self, mono: float) -> None:
        """Append timeline lines that are due; ``fail``/``hang`` stop at ``script.stop_at``."""
        if self.started_mono is None or self.terminal:
            return
        span = max(self.processing_seconds, 1e-9)
        share = (mono - self.started_mono) / span
        if self.script.outcome != "succeed":
            share = min(share, self.script.stop_at)
        due: list[str] = []
        while self.timeline_pos < len(self.timeline) and self.timeline[self.timeline_pos][0] <= share:
            due.append(self.timeline[self.timeline_pos][1])
            self.timeline_pos += 1
        self.append(*due)

    def finish(self, status: str, wall: float, mono: float, *, output: Any = None, error: str | None = None) -> None:
        """Move to a terminal ``status``; sets times, metrics and the ``completed`` event.

        ``metrics.predict_time`` is the processing time (script override first, a tiny value for
        runs that never started, as in the recorded cancel); ``total_time`` counts from creation.
        """
        if status == "succeeded" and self.output != output:
            self.pending_events.add("output")
        self.status = status
        self.output = output
        self.error = error
        self.completed_at, self.completed_mono = wall, mono
        measured = mono - self.started_mono if self.started_mono is not None else 3e-06
        self.metrics = {
            "predict_time": self.script.predict_time if self.script.predict_time is not None else round(measured, 6),
            "total_time": self.script.total_time
            if self.script.total_time is not None
            else round(mono - self.created_mono, 6),
        }
        self.pending_events.add("completed")

    @property
    def logs(self) -> str:
        """The log text: every line followed by a newline."""
        return "".join(line + "\n" for line in self.lines)

    def urls(self, root: str, *, via_predictions: bool) -> dict[str, str]:
        """``get``/``cancel``/``web`` links built from the fake's own ``root`` (``.../v1``)."""
        collection = "predictions" if via_predictions or self.kind == "prediction" else "trainings"
        web_root = root.removesuffix("/v1")
        return {
            "get": f"{root}/{collection}/{self.id}",
            "cancel": f"{root}/{collection}/{self.id}/cancel",
            "web": f"{web_root}/p/{self.id}",
        }

    def to_json(self, root: str, *, create_reply: bool = False) -> dict[str, Any]:
        """The object as the API returns it.

        ``create_reply`` for a training reproduces the recorded create shape: links under
        ``/v1/predictions``, no ``output``/``metrics``/``started_at``/``completed_at``.
        """
        if create_reply and self.kind == "training":
            return {
                "id": self.id,
                "model": self.model,
                "version": self.version,
                "input": self.input,
                "logs": self.logs,
                "error": self.error,
                "status": self.status,
                "created_at": iso(self.created_at),
                "urls": self.urls(root, via_predictions=True),
            }
        body: dict[str, Any] = {
            "id": self.id,
            "model": self.model,
            "version": self.version,
            "input": self.input,
            "logs": self.logs,
            "output": self.output,
            "error": self.error,
            "status": self.status,
            "source": "api",
            "created_at": iso(self.created_at),
            "started_at": iso(self.started_at) if self.started_at is not None else None,
            "completed_at": iso(self.completed_at) if self.completed_at is not None else None,
            "metrics": dict(self.metrics),
            "urls": self.urls(root, via_predictions=False),
        }
        if self.kind == "prediction":
            body["data_removed"] = False
            if self.deadline is not None:
                body["deadline"] = iso(self.deadline)
        else:
            body["webhook_completed"] = None
        return body

    def summary(self) -> dict[str, Any]:
        """Introspection view for ``/_fake/runs``: the identifying fields and the script."""
        return {
            "id": self.id,
            "kind": self.kind,
            "status": self.status,
            "model": self.model,
            "version": self.version,
            "destination": self.destination,
            "webhook": self.webhook,
            "webhook_events_filter": list(self.events_filter),
            "input": self.input,
            "output": self.output,
            "error": self.error,
            "log_lines": len(self.lines),
            "delivery": self.delivery,
            "delivered": dict(self.delivered),
            "created_at": iso(self.created_at),
            "script": self.script.to_dict(),
        }


def resolve_timing(script: RunScript, config: FakeConfig) -> tuple[float | None, float, int]:
    """``(starting_seconds or None for hold, processing_seconds, log_steps)`` for a new run."""
    starting = script.starting_seconds if script.starting_seconds is not None else config.starting_seconds
    if script.hold_starting:
        starting = None
    processing = script.processing_seconds if script.processing_seconds is not None else config.processing_seconds
    steps = script.log_steps if script.log_steps is not None else config.log_steps
    return starting, processing, steps
