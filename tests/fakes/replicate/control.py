"""Control and introspection operations, served under ``/_fake`` and callable in-process.

Each operation is a method of :class:`ControlOps` taking ``(path_params, query, body)`` and
returning JSON-ready data; :data:`OPS` maps its name to the HTTP method and path that expose it.
The in-process helper and the HTTP client (:mod:`.api`) call the same operations, so both routes
behave identically.  Errors raise :class:`ControlError` (HTTP: ``{"error": ...}`` with its status).
No token is needed for ``/_fake`` routes.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .config import apply_config_patch
from .faults import RequestFault, WebhookFault
from .runs import STATUSES, UNSET, Run, RunScript
from .state import FakeState
from .webhooks import WebhookDispatcher

OPS: dict[str, tuple[str, str]] = {
    "health": ("GET", "/_fake/health"),
    "get_config": ("GET", "/_fake/config"),
    "patch_config": ("PATCH", "/_fake/config"),
    "reset": ("POST", "/_fake/reset"),
    "list_faults": ("GET", "/_fake/faults"),
    "add_request_fault": ("POST", "/_fake/faults"),
    "clear_faults": ("DELETE", "/_fake/faults"),
    "remove_fault": ("DELETE", "/_fake/faults/{fault_id}"),
    "add_webhook_fault": ("POST", "/_fake/webhook-faults"),
    "flush_webhooks": ("POST", "/_fake/webhook-faults/flush"),
    "list_scripts": ("GET", "/_fake/scripts"),
    "add_script": ("POST", "/_fake/scripts"),
    "clear_scripts": ("DELETE", "/_fake/scripts"),
    "set_default_script": ("PUT", "/_fake/scripts/default"),
    "list_runs": ("GET", "/_fake/runs"),
    "runs_by_webhook": ("GET", "/_fake/runs/by-webhook"),
    "get_run": ("GET", "/_fake/runs/{run_id}"),
    "transition": ("POST", "/_fake/runs/{run_id}/transition"),
    "append_logs": ("POST", "/_fake/runs/{run_id}/logs"),
    "list_requests": ("GET", "/_fake/requests"),
    "clear_requests": ("DELETE", "/_fake/requests"),
    "list_webhooks": ("GET", "/_fake/webhooks"),
    "clear_webhooks": ("DELETE", "/_fake/webhooks"),
    "file_info": ("GET", "/_fake/files/{file_id}"),
    "add_model": ("POST", "/_fake/models"),
}
"""Operation name → (HTTP method, path) of its control endpoint."""

Params = dict[str, str]


class ControlError(Exception):
    """A control call that cannot be carried out; ``status`` is its HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _obj(body: Any) -> dict[str, Any]:
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise ControlError(400, "body must be a JSON object")
    return body


def _build(factory: Callable[[dict[str, Any]], Any], body: Any) -> Any:
    try:
        return factory(_obj(body))
    except (TypeError, ValueError) as exc:
        raise ControlError(400, str(exc)) from exc


class ControlOps:
    """The operations; see :data:`OPS` for their endpoints and the docstrings for their contracts."""

    def __init__(self, state: FakeState, dispatcher: WebhookDispatcher) -> None:
        self.state = state
        self.dispatcher = dispatcher

    def call(self, op: str, path: Params, query: Params, body: Any) -> Any:
        """Run operation ``op``; raises :class:`ControlError` for unknown ops and bad input."""
        if op not in OPS:
            raise ControlError(404, f"unknown operation {op}")
        method: Callable[[Params, Params, Any], Any] = getattr(self, op)
        return method(path, query, body)

    def _run(self, path: Params) -> Run:
        run = self.state.get_run(path["run_id"])
        if run is None:
            raise ControlError(404, f"no run {path['run_id']}")
        return run

    # ------------------------------------------------------------------ server and config
    def health(self, path: Params, query: Params, body: Any) -> Any:
        """``{"ok": true, "base_url": ".../v1"}``."""
        return {"ok": True, "base_url": self.state.root}

    def get_config(self, path: Params, query: Params, body: Any) -> Any:
        """The current :class:`FakeConfig` as JSON."""
        with self.state.lock:
            return self.state.config.to_dict()

    def patch_config(self, path: Params, query: Params, body: Any) -> Any:
        """Set the given config fields (400 for unknown ones); returns the new config."""
        with self.state.lock:
            trial = self.state.config.copy()
            _build(lambda data: apply_config_patch(trial, data), body)
            self.state.config = trial
            return trial.to_dict()

    def reset(self, path: Params, query: Params, body: Any) -> Any:
        """Forget runs, files, faults, scripts and records; restore the initial config and seeds."""
        self.state.reset()
        self.dispatcher.reset()
        return {}

    # ------------------------------------------------------------------ faults
    def list_faults(self, path: Params, query: Params, body: Any) -> Any:
        """``{"request_faults": [...], "webhook_faults": [...]}`` (active rules with ``count`` left)."""
        return self.state.faults.snapshot()

    def add_request_fault(self, path: Params, query: Params, body: Any) -> Any:
        """Add a :class:`RequestFault` from its JSON fields; returns it with its ``id``."""
        fault = _build(RequestFault.from_dict, body)
        return self.state.faults.add_request_fault(fault).to_dict()

    def add_webhook_fault(self, path: Params, query: Params, body: Any) -> Any:
        """Add a :class:`WebhookFault` from its JSON fields; returns it with its ``id``."""
        fault = _build(WebhookFault.from_dict, body)
        return self.state.faults.add_webhook_fault(fault).to_dict()

    def clear_faults(self, path: Params, query: Params, body: Any) -> Any:
        """Remove every request and webhook fault rule."""
        self.state.faults.clear()
        return {}

    def remove_fault(self, path: Params, query: Params, body: Any) -> Any:
        """Remove one rule by id (404 if unknown)."""
        if not self.state.faults.remove(path["fault_id"]):
            raise ControlError(404, f"no fault {path['fault_id']}")
        return {}

    def flush_webhooks(self, path: Params, query: Params, body: Any) -> Any:
        """Release held reorder batches at the next tick; ``{"released": <messages>}``."""
        return {"released": self.dispatcher.release_all()}

    # ------------------------------------------------------------------ scripts and runs
    def list_scripts(self, path: Params, query: Params, body: Any) -> Any:
        """``{"queued": [...], "default": {...}}``."""
        with self.state.lock:
            return {
                "queued": [s.to_dict() for s in self.state.scripts],
                "default": self.state.default_script.to_dict(),
            }

    def add_script(self, path: Params, query: Params, body: Any) -> Any:
        """Queue a :class:`RunScript` for the next new run it matches; returns it."""
        script = _build(RunScript.from_dict, body)
        with self.state.lock:
            self.state.scripts.append(script)
        return script.to_dict()

    def clear_scripts(self, path: Params, query: Params, body: Any) -> Any:
        """Drop queued scripts (the default stays)."""
        with self.state.lock:
            self.state.scripts.clear()
        return {}

    def set_default_script(self, path: Params, query: Params, body: Any) -> Any:
        """Replace the script used when no queued one matches; returns it."""
        script = _build(RunScript.from_dict, body)
        with self.state.lock:
            self.state.default_script = script
        return script.to_dict()

    def list_runs(self, path: Params, query: Params, body: Any) -> Any:
        """``{"count": n, "runs": [summary...]}`` of runs matching the query filters (see
        :meth:`FakeState.query_runs`), oldest first."""
        try:
            runs = self.state.query_runs(dict(query))
        except ValueError as exc:
            raise ControlError(400, str(exc)) from exc
        with self.state.lock:
            return {"count": len(runs), "runs": [r.summary() for r in runs]}

    def runs_by_webhook(self, path: Params, query: Params, body: Any) -> Any:
        """``{webhook URL: number of runs created with it}``."""
        return self.state.runs_by_webhook()

    def get_run(self, path: Params, query: Params, body: Any) -> Any:
        """Summary of one run plus ``api`` (the object the API would return now) and ``logs``."""
        run = self._run(path)
        with self.state.lock:
            return {**run.summary(), "api": run.to_json(self.state.root), "logs": run.logs}

    def transition(self, path: Params, query: Params, body: Any) -> Any:
        """Move a run: body ``{"status": ..., "error"?: str, "output"?: any}``; 409 if terminal."""
        data = _obj(body)
        status = data.get("status")
        if status not in STATUSES or status == "starting":
            raise ControlError(400, f"status must be one of {list(STATUSES[1:])}")
        run = self._run(path)
        try:
            self.state.transition(run, status, error=data.get("error"), output=data.get("output", UNSET))
        except ValueError as exc:
            raise ControlError(409, str(exc)) from exc
        with self.state.lock:
            return run.to_json(self.state.root)

    def append_logs(self, path: Params, query: Params, body: Any) -> Any:
        """Append ``{"lines": [...]}`` to a run's logs."""
        lines = _obj(body).get("lines")
        if not isinstance(lines, list) or not all(isinstance(x, str) for x in lines):
            raise ControlError(400, "lines must be a list of strings")
        run = self._run(path)
        self.state.append_logs(run, lines)
        return {"log_lines": len(run.lines)}

    # ------------------------------------------------------------------ records
    def list_requests(self, path: Params, query: Params, body: Any) -> Any:
        """Received ``/v1`` requests, oldest first; filters ``method`` and ``path`` (glob)."""
        with self.state.lock:
            records = list(self.state.requests)
        method, pattern = query.get("method"), query.get("path")
        return [
            r.to_dict()
            for r in records
            if (method is None or r.method == method.upper())
            and (pattern is None or fnmatch.fnmatchcase(r.path, pattern))
        ]

    def clear_requests(self, path: Params, query: Params, body: Any) -> Any:
        """Forget request records."""
        with self.state.lock:
            self.state.requests.clear()
        return {}

    def list_webhooks(self, path: Params, query: Params, body: Any) -> Any:
        """Delivery records, oldest first; filters ``run_id``, ``outcome`` and ``event``."""
        records = self.dispatcher.snapshot()
        for key in ("run_id", "outcome"):
            if key in query:
                records = [r for r in records if r[key] == query[key]]
        if "event" in query:
            records = [r for r in records if query["event"] in r["events"]]
        return records

    def clear_webhooks(self, path: Params, query: Params, body: Any) -> Any:
        """Forget delivery records."""
        self.dispatcher.clear_records()
        return {}

    # ------------------------------------------------------------------ catalog
    def file_info(self, path: Params, query: Params, body: Any) -> Any:
        """``{"file": <file object>, "download_url": <signed URL>}`` of a live file."""
        stored = self.state.get_file(path["file_id"])
        if stored is None:
            raise ControlError(404, f"no file {path['file_id']}")
        return {"file": stored.to_json(self.state.root), "download_url": self.state.download_url(stored.id)}

    def add_model(self, path: Params, query: Params, body: Any) -> Any:
        """Seed a model: ``owner``, ``name`` and optional ``visibility``, ``trainer``, ``official``,
        ``versions`` (count of generated versions); returns the model object."""
        data = _obj(body)
        if not isinstance(data.get("owner"), str) or not isinstance(data.get("name"), str):
            raise ControlError(400, "owner and name are required strings")
        model = self.state.add_model(
            data["owner"],
            data["name"],
            visibility=str(data.get("visibility", "public")),
            trainer=bool(data.get("trainer", False)),
            official=bool(data.get("official", False)),
            versions=int(data.get("versions", 1)),
        )
        return model.to_json()


def control_routes(ops: ControlOps) -> list[Route]:
    """One Starlette route per operation of :data:`OPS`."""
    routes = []
    for op, (method, path) in OPS.items():

        async def endpoint(request: Request, op: str = op) -> Response:
            raw = await request.body()
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                return Response(json.dumps({"error": "body is not JSON"}), 400, media_type="application/json")
            try:
                result = ops.call(op, dict(request.path_params), dict(request.query_params), body)
            except ControlError as exc:
                return Response(json.dumps({"error": exc.message}), exc.status, media_type="application/json")
            return Response(json.dumps(result), 200, media_type="application/json")

        routes.append(Route(path, endpoint, methods=[method]))
    return routes
