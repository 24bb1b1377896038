"""A scripted provider for tests: runs that advance with time, and switches for faults.

Each run follows its job's config:

* ``--max_train_steps`` (default 3): steps the run reports.
* ``--scripted_seconds`` (default 0.6): how long it runs once started.
* ``--scripted_outcome``: ``complete`` (default), ``fail`` or ``hang`` (never ends).
* ``--scripted_crash_after_accept``: the run is created, then the call raises as if the reply was
  lost (in-process), or the whole server process exits (``"exit"``), once per job.

The "remote" state can live in a JSON file (``state_path``) so it outlives a server process, as a
real provider's does. Load it from a server with
``CLOUDTUNER_PROVIDER_PLUGINS=tests.fakes.scripted_provider:create`` and
``SCRIPTED_PROVIDER_STATE=<file>``.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import threading
import time
import uuid
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cloudtuner.core.errors import ProviderRejectedError, ProviderUnavailableError, WebhookRejectedError
from cloudtuner.core.progress import JobProgress
from cloudtuner.providers.base import (
    NOTHING_CREATED,
    CloudJobInfo,
    CloudJobStatus,
    CloudTrainerService,
    ProviderCapabilities,
    RunRequest,
    WebhookEvent,
)

START_DELAY_SECONDS = 0.1
WEBHOOK_SECRET = b"scripted-webhook-secret"


def sign_webhook(body: bytes) -> str:
    """Return the signature header value the scripted provider expects for ``body``."""
    return hmac.new(WEBHOOK_SECRET, body, hashlib.sha256).hexdigest()


class ScriptedProvider(CloudTrainerService):
    """A provider whose runs follow a script; see the module docstring."""

    def __init__(
        self,
        name: str = "scripted",
        state_path: Path | None = None,
        *,
        uploads: bool = False,
        max_upload_bytes: int | None = None,
        webhooks: bool = False,
    ) -> None:
        self._name = name
        self._state_path = state_path
        self._uploads = uploads
        self._max_upload_bytes = max_upload_bytes
        self._webhooks = webhooks
        self.received_archives: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._memory: dict[str, Any] = {"runs": {}, "crashed": []}
        # Switches for in-process tests.
        self.reject_next_runs = 0
        self.rate_limit_next_runs = 0
        """Create calls turned away before anything is made (``create_outcome: nothing_created``)."""
        self.unavailable_next_calls = 0
        self.unavailable_next_cancels = 0
        self.run_job_calls = 0

    @property
    def provider_name(self) -> str:
        return self._name

    @property
    def capabilities(self) -> ProviderCapabilities:
        return ProviderCapabilities(
            cost_tracking=True,
            live_logs=True,
            webhooks=self._webhooks,
            cancel=True,
            uploads_datasets=self._uploads,
            max_upload_bytes=self._max_upload_bytes,
            dataset_extract_root="/trainer/data" if self._uploads else None,
        )

    # --- state ----------------------------------------------------------------------------------

    @contextmanager
    def _state(self) -> Iterator[dict[str, Any]]:
        with self._lock:
            if self._state_path is None:
                yield self._memory
                return
            self._state_path.parent.mkdir(parents=True, exist_ok=True)
            with self._state_path.with_suffix(".lock").open("a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                state = json.loads(self._state_path.read_text()) if self._state_path.exists() else {}
                state.setdefault("runs", {})
                state.setdefault("crashed", [])
                yield state
                tmp = self._state_path.with_suffix(".tmp")
                tmp.write_text(json.dumps(state))
                tmp.replace(self._state_path)

    def runs(self) -> list[dict[str, Any]]:
        """Return every run made, oldest first (for assertions)."""
        with self._state() as state:
            return sorted(state["runs"].values(), key=lambda run: run["created"])

    def runs_for(self, job_id: str) -> list[dict[str, Any]]:
        """Return the runs made for one cloudtuner job (for assertions)."""
        return [run for run in self.runs() if run["reference"] == job_id]

    def add_foreign_run(self, outcome: str = "complete") -> str:
        """Create a run that cloudtuner did not make (for sync/import tests); return its id."""
        run_id = "ext-" + uuid.uuid4().hex[:12]
        with self._state() as state:
            state["runs"][run_id] = _new_run(run_id, None, {"--scripted_outcome": outcome}, "foreign")
        return run_id

    # --- contract -------------------------------------------------------------------------------

    def _maybe_unavailable(self) -> None:
        if self.unavailable_next_calls > 0:
            self.unavailable_next_calls -= 1
            raise ProviderUnavailableError("scripted provider: temporarily unavailable")

    async def validate_credentials(self) -> dict[str, Any]:
        self._maybe_unavailable()
        return {"username": "scripted", "type": "user"}

    async def run_job(self, request: RunRequest) -> CloudJobInfo:
        self.run_job_calls += 1
        self._maybe_unavailable()
        if self.reject_next_runs > 0:
            self.reject_next_runs -= 1
            raise ProviderRejectedError("scripted provider: this run was refused")
        if self.rate_limit_next_runs > 0:
            self.rate_limit_next_runs -= 1
            raise ProviderUnavailableError(
                "scripted provider: rate limited; nothing was created", create_outcome=NOTHING_CREATED
            )
        if request.dataset_archive is not None:
            archive = request.dataset_archive
            with zipfile.ZipFile(archive.path) as bundle:
                names = bundle.namelist()
            self.received_archives.append(
                {"job_id": request.job_id, "sha256": archive.sha256, "size": archive.size_bytes, "names": names,
                 "dataloader": request.dataloader_config, "webhook_url": request.webhook_url}
            )  # fmt: skip
            if request.report_progress is not None:
                await request.report_progress("uploading", archive.size_bytes, archive.size_bytes)
        run_id = "run-" + uuid.uuid4().hex[:12]
        crash = request.config.get("--scripted_crash_after_accept")
        with self._state() as state:
            run = _new_run(run_id, request.job_id, request.config, request.tracker_run_name)
            state["runs"][run_id] = run
            crash_now = bool(crash) and request.job_id not in state["crashed"]
            if crash_now:
                state["crashed"].append(request.job_id)
        if crash_now and crash == "exit":
            os._exit(17)
        if crash_now:
            raise ProviderUnavailableError("scripted provider: the reply was lost")
        return _info(run)

    async def find_job_by_reference(self, job_id: str, request: RunRequest | None = None) -> CloudJobInfo | None:
        del request
        self._maybe_unavailable()
        matches = self.runs_for(job_id)
        return _info(matches[-1]) if matches else None

    async def get_job_status(self, provider_job_id: str) -> CloudJobInfo:
        self._maybe_unavailable()
        with self._state() as state:
            run = state["runs"].get(provider_job_id)
        if run is None:
            return CloudJobInfo(
                provider_job_id=provider_job_id, status=CloudJobStatus.FAILED, error="the provider has no such run"
            )
        return _info(run)

    async def get_job_logs(self, provider_job_id: str) -> str:
        self._maybe_unavailable()
        with self._state() as state:
            run = state["runs"].get(provider_job_id)
        return "" if run is None else _logs(run)

    async def cancel_job(self, provider_job_id: str) -> bool:
        self._maybe_unavailable()
        if self.unavailable_next_cancels > 0:
            self.unavailable_next_cancels -= 1
            raise ProviderUnavailableError("scripted provider: cancel could not be delivered")
        with self._state() as state:
            run = state["runs"].get(provider_job_id)
            if run is None:
                return False
            if _phase(run)[0] not in ("completed", "failed"):
                run["cancelled_at"] = time.time()
            return True

    async def parse_webhook(self, headers: Mapping[str, str], body: bytes, now: datetime) -> WebhookEvent:
        """Accept ``{"id", "run_id", "status", "logs"?}`` signed as hex HMAC-SHA256 of the body."""
        del now
        expected = hmac.new(WEBHOOK_SECRET, body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(headers.get("x-scripted-signature", ""), expected):
            raise WebhookRejectedError()
        event = json.loads(body)
        info = CloudJobInfo(
            provider_job_id=event["run_id"], status=CloudJobStatus(event["status"]), cost_usd=event.get("cost")
        )
        return WebhookEvent(event_id=event["id"], info=info, logs=event.get("logs"))

    async def list_jobs(self, limit: int = 50) -> list[CloudJobInfo]:
        self._maybe_unavailable()
        return [_info(run) for run in reversed(self.runs())][:limit]


def _new_run(run_id: str, reference: str | None, config: dict[str, Any], run_name: str | None) -> dict[str, Any]:
    return {
        "id": run_id,
        "reference": reference,
        "created": time.time(),
        "steps": int(config.get("--max_train_steps", 3)),
        "seconds": float(config.get("--scripted_seconds", 0.6)),
        "outcome": str(config.get("--scripted_outcome", "complete")),
        "run_name": run_name,
        "cancelled_at": None,
    }


def _phase(run: dict[str, Any], now: float | None = None) -> tuple[str, float]:
    """Return (state, seconds running) of a run at ``now``."""
    now = time.time() if now is None else now
    if run["cancelled_at"] is not None:
        now = min(now, run["cancelled_at"])
    elapsed = now - run["created"] - START_DELAY_SECONDS
    if run["cancelled_at"] is not None and elapsed < run["seconds"]:
        return "cancelled", max(0.0, elapsed)
    if elapsed < 0:
        return "starting", 0.0
    if elapsed < run["seconds"] or run["outcome"] == "hang":
        return "running", elapsed
    return ("failed" if run["outcome"] == "fail" else "completed"), run["seconds"]


def _step(run: dict[str, Any], running_seconds: float) -> int:
    if run["seconds"] <= 0:
        return run["steps"]
    return min(run["steps"], int(run["steps"] * running_seconds / run["seconds"]))


def _logs(run: dict[str, Any]) -> str:
    state, running = _phase(run)
    if state == "starting":
        return ""
    lines = ["Loading model", "Starting training"]
    for step in range(1, _step(run, running) + 1):
        lines.append(f"Training step {step}/{run['steps']} loss={1.0 / step:.4f} lr=0.0001")
    if state == "completed":
        lines.append("Training complete")
    if state == "failed":
        lines.append("Error: scripted failure")
    return "\n".join(lines) + "\n"


def _info(run: dict[str, Any]) -> CloudJobInfo:
    state, running = _phase(run)
    step = _step(run, running)
    created = datetime.fromtimestamp(run["created"], UTC)
    started = finished = None
    if state != "starting":  # times as a real provider reports them (Replicate's started_at, completed_at)
        started = datetime.fromtimestamp(run["created"] + START_DELAY_SECONDS, UTC)
        if state in ("completed", "failed", "cancelled"):
            finished = datetime.fromtimestamp(run["created"] + START_DELAY_SECONDS + running, UTC)
    return CloudJobInfo(
        provider_job_id=run["id"],
        status=CloudJobStatus(state if state != "starting" else "starting"),
        reference=run["reference"],
        progress=JobProgress(
            stage="training" if state == "running" else state,
            step=step,
            total_steps=run["steps"],
            loss=round(1.0 / step, 4) if step else None,
        ),
        cost_usd=round(running * 0.001, 6),
        hardware="scripted-gpu",
        error="scripted failure" if state == "failed" else None,
        created_at=created,
        started_at=started,
        finished_at=finished,
        metadata={"tracker_run_name": run["run_name"]},
    )


def create(settings: Any) -> ScriptedProvider:
    """Plugin factory: a scripted provider whose state file is ``$SCRIPTED_PROVIDER_STATE``."""
    del settings
    path = os.environ.get("SCRIPTED_PROVIDER_STATE")
    return ScriptedProvider(state_path=Path(path) if path else None)


def create_uploader(settings: Any) -> ScriptedProvider:
    """Plugin factory: a scripted provider named ``uploader`` that takes dataset archives (100 MiB limit)."""
    del settings
    path = os.environ.get("SCRIPTED_PROVIDER_STATE")
    return ScriptedProvider(
        name="uploader",
        state_path=Path(path).with_name("uploader.json") if path else None,
        uploads=True,
        max_upload_bytes=100 * 2**20,
        webhooks=True,
    )
