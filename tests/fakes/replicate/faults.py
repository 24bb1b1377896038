"""Fault switches: request faults (applied to ``/v1`` calls) and webhook faults.

Rules are consumed first-added-first: each matching request or webhook message uses up one unit of
``count`` of the first rule that matches it (``count=None`` never runs out).  All methods are
thread-safe, so tests may add rules from their own thread while the server runs.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import itertools
import threading
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

RequestFaultKind = Literal["status", "delay", "drop_reply", "timeout_reply"]
WebhookFaultKind = Literal["drop", "duplicate", "reorder"]

CREATE_RUN_PATHS: tuple[str, ...] = (
    "/v1/predictions",
    "/v1/models/*/*/predictions",
    "/v1/deployments/*/*/predictions",
    "/v1/models/*/*/versions/*/trainings",
)
"""Glob patterns of the calls that create a prediction or training (method ``POST``)."""

_ids = itertools.count(1)
_F = TypeVar("_F", "RequestFault", "WebhookFault")


def _next_id(prefix: str) -> str:
    return f"{prefix}{next(_ids)}"


def _check_keys(cls: type, data: dict[str, Any]) -> None:
    names = {f.name for f in dataclasses.fields(cls)} - {"id", "hits"}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"unknown fault field(s): {', '.join(unknown)}")


@dataclass
class RequestFault:
    """A rule for the next ``count`` requests matching ``method`` and ``path``.

    * ``status``: answer ``status`` with ``body`` (default: the reference's body for that code)
      and ``Retry-After: retry_after`` when set.  With ``process=True`` the request is carried out
      first (e.g. the run is created) and only the reply is replaced.
    * ``delay``: wait ``seconds`` before handling the request normally.
    * ``drop_reply``: carry out the request, then close the connection without any reply.
    * ``timeout_reply``: carry out the request, then send nothing until the client gives up (or
      ``seconds`` pass, default 60), then close the connection.

    ``path`` is a glob (``*`` also matches ``/``) or a list of globs on the URL path.
    """

    kind: RequestFaultKind = "status"
    count: int | None = 1
    method: str | None = None
    path: str | list[str] | tuple[str, ...] | None = None
    status: int = 503
    retry_after: str | None = None
    body: dict[str, Any] | None = None
    seconds: float = 0.0
    process: bool = False
    id: str = field(default_factory=lambda: _next_id("rf"))
    hits: int = 0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RequestFault:
        """Build from JSON; raises ``ValueError`` for unknown keys or kinds."""
        _check_keys(cls, data)
        if data.get("kind", "status") not in ("status", "delay", "drop_reply", "timeout_reply"):
            raise ValueError("kind must be status, delay, drop_reply or timeout_reply")
        fault = cls(**data)
        if fault.retry_after is not None:
            fault.retry_after = str(fault.retry_after)
        return fault

    def to_dict(self) -> dict[str, Any]:
        """JSON view including ``id`` and ``hits``."""
        out = dataclasses.asdict(self)
        if isinstance(self.path, tuple):
            out["path"] = list(self.path)
        return out

    def matches(self, method: str, path: str) -> bool:
        """Whether this rule applies to a request (``count`` is not checked here)."""
        if self.method is not None and self.method.upper() != method.upper():
            return False
        if self.path is None:
            return True
        patterns = [self.path] if isinstance(self.path, str) else list(self.path)
        return any(fnmatch.fnmatchcase(path, p) for p in patterns)


@dataclass
class WebhookFault:
    """A rule for the next ``count`` webhook messages (optionally of one run or one event).

    * ``drop``: the message is recorded as ``dropped`` and never sent (no retries either).
    * ``duplicate``: the message is sent twice with the same ``webhook-id``.
    * ``reorder``: ``count`` messages are held back and then sent newest first; they are released
      when ``count`` have been collected or ``hold_seconds`` after the first one was held.
    """

    kind: WebhookFaultKind = "drop"
    count: int | None = 1
    run_id: str | None = None
    event: str | None = None
    hold_seconds: float = 1.0
    id: str = field(default_factory=lambda: _next_id("wf"))
    hits: int = 0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WebhookFault:
        """Build from JSON; raises ``ValueError`` for unknown keys or kinds."""
        _check_keys(cls, data)
        if data.get("kind", "drop") not in ("drop", "duplicate", "reorder"):
            raise ValueError("kind must be drop, duplicate or reorder")
        fault = cls(**data)
        if fault.kind == "reorder" and (fault.count is None or fault.count < 2):
            raise ValueError("a reorder fault needs a count of at least 2")
        return fault

    def to_dict(self) -> dict[str, Any]:
        """JSON view including ``id`` and ``hits``."""
        return dataclasses.asdict(self)

    def matches(self, run_id: str, events: tuple[str, ...]) -> bool:
        """Whether this rule applies to a message of ``run_id`` carrying ``events``."""
        if self.run_id is not None and self.run_id != run_id:
            return False
        return self.event is None or self.event in events


class FaultBook:
    """The active fault rules."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.request_faults: list[RequestFault] = []
        self.webhook_faults: list[WebhookFault] = []

    def add_request_fault(self, fault: RequestFault) -> RequestFault:
        """Append a request rule and return it."""
        with self._lock:
            self.request_faults.append(fault)
        return fault

    def add_webhook_fault(self, fault: WebhookFault) -> WebhookFault:
        """Append a webhook rule and return it."""
        with self._lock:
            self.webhook_faults.append(fault)
        return fault

    def take_request_fault(self, method: str, path: str) -> RequestFault | None:
        """Consume one unit of the first matching request rule and return it."""
        with self._lock:
            for fault in self.request_faults:
                if fault.matches(method, path):
                    return self._consume(fault, self.request_faults)
        return None

    def take_webhook_fault(
        self, run_id: str, events: tuple[str, ...], *, exclude_reorder: bool = False
    ) -> WebhookFault | None:
        """Consume one unit of the first matching webhook rule and return it."""
        with self._lock:
            for fault in self.webhook_faults:
                if exclude_reorder and fault.kind == "reorder":
                    continue
                if fault.matches(run_id, events):
                    return self._consume(fault, self.webhook_faults)
        return None

    @staticmethod
    def _consume(fault: _F, rules: list[_F]) -> _F:
        fault.hits += 1
        if fault.count is not None:
            fault.count -= 1
            if fault.count <= 0:
                rules.remove(fault)
        return fault

    def remove(self, fault_id: str) -> bool:
        """Delete a rule by id; True if it existed."""
        with self._lock:
            before = len(self.request_faults) + len(self.webhook_faults)
            self.request_faults = [f for f in self.request_faults if f.id != fault_id]
            self.webhook_faults = [f for f in self.webhook_faults if f.id != fault_id]
            return len(self.request_faults) + len(self.webhook_faults) < before

    def clear(self, *, requests: bool = True, webhooks: bool = True) -> None:
        """Remove all rules of the chosen families."""
        with self._lock:
            if requests:
                self.request_faults.clear()
            if webhooks:
                self.webhook_faults.clear()

    def snapshot(self) -> dict[str, list[dict[str, Any]]]:
        """JSON view of the active rules."""
        with self._lock:
            return {
                "request_faults": [f.to_dict() for f in self.request_faults],
                "webhook_faults": [f.to_dict() for f in self.webhook_faults],
            }
