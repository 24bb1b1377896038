"""Typed Python API for controlling and inspecting a fake, in-process or over HTTP.

:class:`FakeControl` implements every helper on top of one abstract ``_call`` that runs a control
operation (see :data:`.control.OPS`).  :class:`.server.FakeReplicate` runs operations directly;
:class:`FakeReplicateRemote` sends them to ``/_fake/...`` of a fake in another process.  Both
therefore behave the same.  Every ``wait_*`` helper polls with a deadline and raises
``TimeoutError`` naming what it waited for.
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import httpx

from .control import OPS, ControlError
from .faults import CREATE_RUN_PATHS
from .runs import TERMINAL, UNSET
from .webhooks import is_loopback_url

T = TypeVar("T")
Params = dict[str, str]


def _query(filters: dict[str, Any]) -> Params:
    """Query-string form of filters: None dropped, non-strings as JSON text."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in filters.items() if v is not None}


class FakeControl(ABC):
    """Control surface shared by the in-process fake and the HTTP client."""

    @property
    @abstractmethod
    def base_url(self) -> str:
        """The fake's API base, ``http://127.0.0.1:<port>/v1``."""

    @abstractmethod
    def _call(self, op: str, *, path: Params | None = None, query: Params | None = None, body: Any = None) -> Any:
        """Run control operation ``op`` and return its JSON result."""

    @property
    def root_url(self) -> str:
        """``base_url`` without ``/v1`` (what ``replicate.Client(base_url=...)`` wants)."""
        return self.base_url.removesuffix("/v1")

    # ------------------------------------------------------------------ config
    def config(self) -> dict[str, Any]:
        """The current configuration."""
        result: dict[str, Any] = self._call("get_config")
        return result

    def configure(self, **fields: Any) -> dict[str, Any]:
        """Change configuration fields (see :class:`.config.FakeConfig`); returns the new config."""
        result: dict[str, Any] = self._call("patch_config", body=fields)
        return result

    def reset(self) -> None:
        """Back to a fresh fake: initial config, seeds, no runs/files/faults/scripts/records."""
        self._call("reset")

    @property
    def token(self) -> str:
        """One valid API token (the alphabetically first)."""
        return str(sorted(self.config()["tokens"])[0])

    @property
    def webhook_secret(self) -> str:
        """The ``whsec_...`` signing secret."""
        return str(self.config()["webhook_secret"])

    # ------------------------------------------------------------------ request faults
    def add_fault(self, **fields: Any) -> str:
        """Add a request fault from :class:`.faults.RequestFault` fields; returns its id."""
        return str(self._call("add_request_fault", body=fields)["id"])

    def fail_next(
        self,
        status: int = 503,
        count: int | None = 1,
        *,
        method: str | None = None,
        path: str | Sequence[str] | None = None,
        retry_after: int | str | None = None,
        body: dict[str, Any] | None = None,
        process: bool = False,
    ) -> str:
        """The next ``count`` matching requests answer ``status`` (with ``process=True`` they are
        carried out first, e.g. the run is created, and only the reply is an error)."""
        return self.add_fault(
            kind="status",
            status=status,
            count=count,
            method=method,
            path=_paths(path),
            retry_after=None if retry_after is None else str(retry_after),
            body=body,
            process=process,
        )

    def throttle_next(
        self,
        count: int | None = 1,
        *,
        retry_after: int | str | None = 1,
        method: str | None = None,
        path: str | Sequence[str] | None = None,
    ) -> str:
        """429 with the throttle body and, unless ``retry_after`` is None, ``Retry-After``."""
        return self.fail_next(429, count, method=method, path=path, retry_after=retry_after)

    def insufficient_credit(self, count: int | None = 1) -> str:
        """402 "Insufficient credit" on the next ``count`` create calls (None: until removed)."""
        return self.fail_next(402, count, method="POST", path=CREATE_RUN_PATHS)

    def slow_next(
        self,
        seconds: float,
        count: int | None = 1,
        *,
        method: str | None = None,
        path: str | Sequence[str] | None = None,
    ) -> str:
        """Delay the next ``count`` matching requests by ``seconds``, then answer normally."""
        return self.add_fault(kind="delay", seconds=seconds, count=count, method=method, path=_paths(path))

    def drop_reply_next(
        self,
        count: int | None = 1,
        *,
        method: str | None = "POST",
        path: str | Sequence[str] | None = CREATE_RUN_PATHS,
    ) -> str:
        """Carry out the next matching requests (default: create calls) but close the connection
        without replying."""
        return self.add_fault(kind="drop_reply", count=count, method=method, path=_paths(path))

    def timeout_reply_next(
        self,
        count: int | None = 1,
        *,
        hold_seconds: float = 60.0,
        method: str | None = "POST",
        path: str | Sequence[str] | None = CREATE_RUN_PATHS,
    ) -> str:
        """Carry out the next matching requests but send nothing until the client gives up (at
        most ``hold_seconds``), then close the connection."""
        return self.add_fault(kind="timeout_reply", seconds=hold_seconds, count=count, method=method, path=_paths(path))

    def faults(self) -> dict[str, list[dict[str, Any]]]:
        """Active request and webhook fault rules."""
        result: dict[str, list[dict[str, Any]]] = self._call("list_faults")
        return result

    def remove_fault(self, fault_id: str) -> None:
        """Remove one rule by id."""
        self._call("remove_fault", path={"fault_id": fault_id})

    def clear_faults(self) -> None:
        """Remove every fault rule."""
        self._call("clear_faults")

    # ------------------------------------------------------------------ webhook faults
    def _webhook_fault(self, kind: str, count: int | None, run_id: str | None, event: str | None, **extra: Any) -> str:
        body = {"kind": kind, "count": count, "run_id": run_id, "event": event, **extra}
        return str(self._call("add_webhook_fault", body=body)["id"])

    def drop_webhooks(self, count: int | None = 1, *, run_id: str | None = None, event: str | None = None) -> str:
        """Never send the next ``count`` matching webhook messages (recorded as ``dropped``)."""
        return self._webhook_fault("drop", count, run_id, event)

    def duplicate_webhooks(self, count: int | None = 1, *, run_id: str | None = None, event: str | None = None) -> str:
        """Send the next ``count`` matching messages twice, with the same ``webhook-id``."""
        return self._webhook_fault("duplicate", count, run_id, event)

    def reorder_webhooks(
        self, count: int = 2, *, run_id: str | None = None, event: str | None = None, hold_seconds: float = 1.0
    ) -> str:
        """Hold the next ``count`` matching messages, then send them newest first."""
        return self._webhook_fault("reorder", count, run_id, event, hold_seconds=hold_seconds)

    def flush_webhooks(self) -> int:
        """Release held reorder batches now; returns how many messages were held."""
        return int(self._call("flush_webhooks")["released"])

    # ------------------------------------------------------------------ scripts and runs
    def script_next(self, **fields: Any) -> dict[str, Any]:
        """Queue a :class:`.runs.RunScript` (e.g. ``outcome="fail"``, ``processing_seconds=0.5``,
        ``log_steps=4``, ``kind="training"``) for the next new run it matches."""
        result: dict[str, Any] = self._call("add_script", body=fields)
        return result

    def set_default_script(self, **fields: Any) -> dict[str, Any]:
        """Script for runs with no matching queued script."""
        result: dict[str, Any] = self._call("set_default_script", body=fields)
        return result

    def scripts(self) -> dict[str, Any]:
        """``{"queued": [...], "default": {...}}``: scripts not yet used and the default one."""
        result: dict[str, Any] = self._call("list_scripts")
        return result

    def clear_scripts(self) -> None:
        """Drop queued scripts."""
        self._call("clear_scripts")

    def runs(self, *, input: dict[str, Any] | None = None, **filters: Any) -> list[dict[str, Any]]:
        """Run summaries, oldest first, filtered by ``kind``, ``status``, ``model``, ``version``,
        ``destination``, ``webhook``, ``webhook_contains`` and ``input={key: value}``."""
        query = dict(filters)
        for key, value in (input or {}).items():
            query[f"input.{key}"] = value
        runs: list[dict[str, Any]] = self._call("list_runs", query=_query(query))["runs"]
        return runs

    def count_runs(self, *, input: dict[str, Any] | None = None, **filters: Any) -> int:
        """How many runs match (same filters as :meth:`runs`)."""
        return len(self.runs(input=input, **filters))

    def runs_by_webhook(self) -> dict[str, int]:
        """Runs created per webhook URL (``""`` for none)."""
        result: dict[str, int] = self._call("runs_by_webhook")
        return result

    def run(self, run_id: str) -> dict[str, Any]:
        """A run's summary with ``api`` (its current API object) and ``logs``."""
        result: dict[str, Any] = self._call("get_run", path={"run_id": run_id})
        return result

    def advance(self, run_id: str, status: str, *, error: str | None = None, output: Any = UNSET) -> dict[str, Any]:
        """Move a run to ``processing``/``succeeded``/``failed``/``canceled``/``aborted`` now."""
        body: dict[str, Any] = {"status": status}
        if error is not None:
            body["error"] = error
        if output is not UNSET:
            body["output"] = output
        result: dict[str, Any] = self._call("transition", path={"run_id": run_id}, body=body)
        return result

    def append_logs(self, run_id: str, *lines: str) -> int:
        """Append log lines; returns the run's line count."""
        return int(self._call("append_logs", path={"run_id": run_id}, body={"lines": list(lines)})["log_lines"])

    # ------------------------------------------------------------------ records and catalog
    def requests(self, method: str | None = None, path: str | None = None) -> list[dict[str, Any]]:
        """Received ``/v1`` requests (``path`` is a glob), oldest first."""
        result: list[dict[str, Any]] = self._call("list_requests", query=_query({"method": method, "path": path}))
        return result

    def clear_requests(self) -> None:
        """Forget request records."""
        self._call("clear_requests")

    def webhooks(
        self, run_id: str | None = None, *, outcome: str | None = None, event: str | None = None
    ) -> list[dict[str, Any]]:
        """Webhook delivery records (attempts, drops, refusals), oldest first."""
        query = _query({"run_id": run_id, "outcome": outcome, "event": event})
        result: list[dict[str, Any]] = self._call("list_webhooks", query=query)
        return result

    def clear_webhooks(self) -> None:
        """Forget webhook records."""
        self._call("clear_webhooks")

    def file_download_url(self, file_id: str) -> str:
        """A signed download URL of an uploaded file, served by the fake."""
        return str(self._call("file_info", path={"file_id": file_id})["download_url"])

    def add_model(self, owner: str, name: str, **fields: Any) -> dict[str, Any]:
        """Seed a model (``visibility``, ``trainer``, ``official``, ``versions``)."""
        result: dict[str, Any] = self._call("add_model", body={"owner": owner, "name": name, **fields})
        return result

    # ------------------------------------------------------------------ waiting
    def wait_until(
        self,
        predicate: Callable[[], T | None],
        *,
        timeout: float = 10.0,
        interval: float = 0.02,
        what: str = "condition",
    ) -> T:
        """Poll ``predicate`` until it returns a truthy value (returned) or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() >= deadline:
                raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
            time.sleep(interval)

    def wait_for_run(
        self, run_id: str, status: str | Iterable[str] = TERMINAL, *, timeout: float = 10.0
    ) -> dict[str, Any]:
        """Wait until the run's status is ``status`` (or one of them); returns :meth:`run`."""
        wanted = {status} if isinstance(status, str) else set(status)

        def reached() -> dict[str, Any] | None:
            current = self.run(run_id)
            return current if current["status"] in wanted else None

        return self.wait_until(reached, timeout=timeout, what=f"run {run_id} to reach {sorted(wanted)}")

    def wait_for_webhooks(
        self,
        count: int,
        run_id: str | None = None,
        *,
        outcome: str | None = None,
        event: str | None = None,
        timeout: float = 10.0,
    ) -> list[dict[str, Any]]:
        """Wait until at least ``count`` matching delivery records exist; returns them."""

        def enough() -> list[dict[str, Any]] | None:
            found = self.webhooks(run_id, outcome=outcome, event=event)
            return found if len(found) >= count else None

        return self.wait_until(enough, timeout=timeout, what=f"{count} webhook record(s)")


def _paths(path: str | Sequence[str] | None) -> str | list[str] | None:
    return path if path is None or isinstance(path, str) else list(path)


class FakeReplicateRemote(FakeControl):
    """Controls a fake running in another process through its ``/_fake`` endpoints.

    ``base_url`` is the fake's ``.../v1`` URL; it must be a loopback address.
    """

    def __init__(self, base_url: str, *, timeout: float = 10.0) -> None:
        if not is_loopback_url(base_url):
            raise ValueError("the fake is only reachable on loopback addresses")
        self._base_url = base_url.rstrip("/")
        self._client = httpx.Client(base_url=self.root_url, timeout=timeout, trust_env=False)

    @property
    def base_url(self) -> str:
        return self._base_url

    def close(self) -> None:
        """Close the HTTP client."""
        self._client.close()

    def __enter__(self) -> FakeReplicateRemote:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, op: str, *, path: Params | None = None, query: Params | None = None, body: Any = None) -> Any:
        method, template = OPS[op]
        url = template.format(**(path or {}))
        reply = self._client.request(
            method,
            url,
            params=query or None,
            content=None if body is None else json.dumps(body),
            headers={"content-type": "application/json"},
        )
        if reply.status_code != 200:
            try:
                message = str(reply.json().get("error", reply.text))
            except ValueError:
                message = reply.text
            raise ControlError(reply.status_code, message)
        return reply.json()
