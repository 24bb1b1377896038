"""In-memory state of the fake: files, models, runs, scripts and request records.

All public methods take :attr:`FakeState.lock`, so the Python API (test thread) and the server
(event-loop thread) can use the state at the same time.  :meth:`FakeState.tick` advances every run
by the clock and returns the webhook messages to send; the server calls it every
``config.tick_seconds``.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import io
import itertools
import json
import secrets
import tarfile
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from .catalog import (
    TRAINER_MODELS,
    TRAINER_OWNER,
    Model,
    Version,
    lora_schema,
    stable_version_id,
    trainer_schema,
)
from .config import FakeConfig
from .delivery import deliver, needs_delivery
from .faults import FaultBook
from .logs import (
    failure_lines,
    plan_for,
    prediction_timeline,
    trainer_success_lines,
    trainer_timeline,
)
from .runs import DEFAULT_ERROR, TERMINAL, UNSET, Run, RunKind, RunScript, resolve_timing
from .util import iso, new_file_id, new_run_id, new_version_id
from .webhooks import WebhookMessage, WebhookPlanner

DAY = 86400.0


@dataclass
class StoredFile:
    """An uploaded file and its metadata."""

    id: str
    name: str
    content_type: str
    data: bytes
    metadata: dict[str, Any]
    created_at: float
    expires_at: float
    seq: int

    def to_json(self, root: str) -> dict[str, Any]:
        """File object with every field of the 2024 capture (Python 1.0.7 needs name and etag)."""
        md5 = hashlib.md5(self.data, usedforsecurity=False).hexdigest()
        return {
            "id": self.id,
            "name": self.name,
            "content_type": self.content_type,
            "size": len(self.data),
            "etag": md5,
            "checksums": {"sha256": hashlib.sha256(self.data).hexdigest(), "md5": md5},
            "metadata": self.metadata,
            "created_at": iso(self.created_at, millis=True),
            "expires_at": iso(self.expires_at, millis=True),
            "urls": {"get": f"{root}/files/{self.id}"},
        }


@dataclass
class RequestRecord:
    """One ``/v1`` request as received, with the reply status and any fault applied."""

    seq: int
    time: str
    method: str
    path: str
    query: str
    token: str | None
    user_agent: str | None
    content_type: str | None
    json: Any = None
    status: int | None = None
    fault_id: str | None = None
    fault_kind: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON view."""
        return asdict(self)


class FakeState:
    """Everything the fake remembers.  ``root`` is the absolute ``.../v1`` base used in links."""

    def __init__(self, config: FakeConfig | None = None) -> None:
        self.initial_config = (config or FakeConfig()).copy()
        self.config = self.initial_config.copy()
        self.lock = threading.RLock()
        self.root = "http://127.0.0.1:0/v1"
        self.faults = FaultBook()
        self.planner = WebhookPlanner()
        self.files_secret = secrets.token_bytes(32)
        self._seq = itertools.count(1)
        self.files: dict[str, StoredFile] = {}
        self.models: dict[str, Model] = {}
        self.runs: dict[str, Run] = {}
        self.scripts: list[RunScript] = []
        self.default_script = RunScript()
        self.requests: list[RequestRecord] = []
        self.generation = 0
        self.seed()

    # ----------------------------------------------------------------- lifecycle of the state
    @property
    def web_root(self) -> str:
        """``root`` without ``/v1`` (the fake's origin)."""
        return self.root.removesuffix("/v1")

    def next_seq(self) -> int:
        """A process-wide increasing sequence number (creation order)."""
        return next(self._seq)

    def reset(self) -> None:
        """Back to the state of a new fake: initial config, seed catalog, no runs/files/faults."""
        with self.lock:
            self.config = self.initial_config.copy()
            self.faults.clear()
            self.planner.reset()
            self.files.clear()
            self.models.clear()
            self.runs.clear()
            self.scripts.clear()
            self.default_script = RunScript()
            self.requests.clear()
            self.generation += 1
            self.seed()

    def seed(self) -> None:
        """Seed ``simpletuner/advanced-trainer*`` (the first with two versions, newest first) and
        an empty private destination model ``<username>/trained-lora``."""
        now = time.time()
        with self.lock:
            for name in TRAINER_MODELS:
                model = self.add_model(
                    TRAINER_OWNER,
                    name,
                    created_at=now - 90 * DAY,
                    trainer=True,
                    description="SimpleTuner advanced trainer",
                    versions=0,
                )
                count = 2 if name == "advanced-trainer" else 1
                for index in range(1, count + 1):
                    self.add_version(
                        model,
                        trainer_schema(),
                        version_id=stable_version_id(f"{model.full_name}:{index}"),
                        created_at=now - (60 - 25 * index) * DAY,
                    )
            self.add_model(self.config.username, "trained-lora", created_at=now - DAY, visibility="private", versions=0)

    # ----------------------------------------------------------------- models and versions
    def add_model(
        self,
        owner: str,
        name: str,
        *,
        created_at: float | None = None,
        visibility: str = "public",
        description: str | None = None,
        trainer: bool = False,
        official: bool = False,
        hardware: str = "gpu-l40s",
        versions: int = 0,
    ) -> Model:
        """Create (or replace) a model, with ``versions`` generated LoRA-style versions."""
        with self.lock:
            model = Model(
                owner=owner,
                name=name,
                created_at=created_at or time.time(),
                seq=self.next_seq(),
                visibility=visibility,
                description=description,
                hardware=hardware,
                is_official=official,
                trainer=trainer,
            )
            self.models[model.full_name] = model
            for _ in range(versions):
                self.add_version(model, trainer_schema() if trainer else lora_schema())
            return model

    def add_version(
        self,
        model: Model,
        schema: dict[str, Any],
        *,
        version_id: str | None = None,
        created_at: float | None = None,
    ) -> Version:
        """Add a version as the model's newest."""
        with self.lock:
            version = Version(
                id=version_id or new_version_id(),
                created_at=created_at or time.time(),
                seq=self.next_seq(),
                openapi_schema=schema,
            )
            model.versions.insert(0, version)
            return version

    def get_model(self, owner: str, name: str) -> Model | None:
        """The model ``owner/name`` or None."""
        with self.lock:
            return self.models.get(f"{owner}/{name}")

    def find_version(self, version_id: str) -> tuple[Model, Version] | None:
        """The model and version with this id, searching all models."""
        with self.lock:
            for model in self.models.values():
                version = model.find_version(version_id)
                if version is not None:
                    return model, version
        return None

    # ----------------------------------------------------------------- files
    def add_file(self, name: str, content_type: str, data: bytes, metadata: dict[str, Any]) -> StoredFile:
        """Store an upload; ``expires_at`` follows ``config.file_retention_seconds``."""
        with self.lock:
            now = time.time()
            stored = StoredFile(
                id=new_file_id(self.config.file_id_style),
                name=name,
                content_type=content_type,
                data=data,
                metadata=metadata,
                created_at=now,
                expires_at=now + self.config.file_retention_seconds,
                seq=self.next_seq(),
            )
            self.files[stored.id] = stored
            return stored

    def get_file(self, file_id: str) -> StoredFile | None:
        """A live (not deleted, not expired) file or None."""
        with self.lock:
            stored = self.files.get(file_id)
            if stored is None or stored.expires_at <= time.time():
                return None
            return stored

    def delete_file(self, file_id: str) -> bool:
        """Delete a live file; False if there was none."""
        with self.lock:
            if self.get_file(file_id) is None:
                return False
            del self.files[file_id]
            return True

    def live_files(self) -> list[StoredFile]:
        """Live files, newest first."""
        with self.lock:
            now = time.time()
            return sorted((f for f in self.files.values() if f.expires_at > now), key=lambda f: -f.seq)

    def download_signature(self, file_id: str, expiry: int) -> str:
        """base64 HMAC-SHA256 of ``"{owner} {id} {expiry}"`` under the fake's files secret."""
        message = f"{self.config.username} {file_id} {expiry}".encode()
        return base64.b64encode(hmac.new(self.files_secret, message, hashlib.sha256).digest()).decode()

    def download_url(self, file_id: str, ttl: float = 3600.0) -> str:
        """A signed ``/v1/files/{id}/download`` URL served by this fake."""
        expiry = int(time.time() + ttl)
        signature = quote(self.download_signature(file_id, expiry), safe="")
        owner = quote(self.config.username, safe="")
        return f"{self.root}/files/{file_id}/download?owner={owner}&expiry={expiry}&signature={signature}"

    def file_for_url(self, url: str) -> tuple[bool, StoredFile | None]:
        """``(is_ours, file)``: whether ``url`` is a ``/v1/files/<id>`` URL of this fake, and the file."""
        own = urlsplit(self.root)
        parts = urlsplit(url)
        prefix = own.path + "/files/"
        if (parts.scheme, parts.netloc) != (own.scheme, own.netloc) or not parts.path.startswith(prefix):
            return False, None
        file_id = parts.path[len(prefix) :].split("/", 1)[0]
        return True, self.get_file(file_id)

    # ----------------------------------------------------------------- runs
    def _take_script(self, kind: str, model: str, webhook: str | None, run_input: dict[str, Any]) -> RunScript:
        raw_strings = [value for value in run_input.values() if isinstance(value, str)]
        input_text = "\n".join([json.dumps(run_input), *raw_strings])
        for index, script in enumerate(self.scripts):
            if script.matches(kind, model, webhook, input_text):
                return self.scripts.pop(index)
        return dataclasses.replace(self.default_script)

    def create_run(
        self,
        kind: RunKind,
        model: Model,
        version: Version,
        run_input: dict[str, Any],
        *,
        webhook: str | None,
        events_filter: tuple[str, ...] | None,
        destination: str | None = None,
        deadline: float | None = None,
    ) -> Run:
        """Create a run in ``starting``, using the first matching queued script (else the default)."""
        with self.lock:
            script = self._take_script(kind, model.full_name, webhook, run_input)
            starting, processing, log_steps = resolve_timing(script, self.config)
            run_id = new_run_id()
            if model.trainer:
                total = script.total_steps or self.config.total_steps
                timeline = trainer_timeline(run_id, plan_for(run_input, total), log_steps)
            else:
                timeline = prediction_timeline(run_id, log_steps)
            run = Run(
                id=run_id,
                kind=kind,
                seq=self.next_seq(),
                model=model.full_name,
                version=version.id,
                input=run_input,
                script=script,
                starting_seconds=starting,
                processing_seconds=processing,
                log_steps=log_steps,
                created_at=time.time(),
                created_mono=time.monotonic(),
                trainer=model.trainer,
                webhook=webhook,
                events_filter=events_filter if events_filter is not None else tuple(self.config.default_webhook_events),
                destination=destination,
                deadline=deadline,
                timeline=timeline,
            )
            if self.config.start_event_status == "starting":
                run.pending_events.add("start")
            model.run_count += 1
            self.runs[run.id] = run
            return run

    def get_run(self, run_id: str, kind: RunKind | None = None) -> Run | None:
        """A run by id (of ``kind`` when given)."""
        with self.lock:
            run = self.runs.get(run_id)
            return run if run is not None and (kind is None or run.kind == kind) else None

    def list_runs(self, kind: RunKind | None = None) -> list[Run]:
        """Runs newest first."""
        with self.lock:
            return sorted((r for r in self.runs.values() if kind is None or r.kind == kind), key=lambda r: -r.seq)

    def cancel_run(self, run: Run) -> None:
        """Cancel a non-terminal run (terminal runs stay as they are)."""
        with self.lock:
            if not run.terminal:
                run.finish("canceled", time.time(), time.monotonic())

    def transition(self, run: Run, status: str, *, error: str | None = None, output: Any = UNSET) -> None:
        """Move a run by hand.  Raises ``ValueError`` for a terminal run or an unknown status.

        ``processing`` starts it; ``succeeded`` starts it if needed and completes it (``output``
        overrides the computed output); ``failed``/``canceled``/``aborted`` end it where it is.
        """
        with self.lock:
            if run.terminal:
                raise ValueError(f"run {run.id} is already {run.status}")
            wall, mono = time.time(), time.monotonic()
            if status == "processing":
                if run.status == "starting":
                    self._start(run, wall, mono)
            elif status == "succeeded":
                if run.status == "starting":
                    self._start(run, wall, mono)
                if not run.terminal:
                    run.emit_due_lines(float("inf"))
                    self._succeed(run, wall, mono, output)
            elif status == "failed":
                self._fail(run, wall, mono, error or run.script.error or DEFAULT_ERROR)
            elif status in ("canceled", "aborted"):
                run.finish(status, wall, mono)
            else:
                raise ValueError(f"cannot move a run to {status!r}")

    def append_logs(self, run: Run, lines: list[str]) -> None:
        """Append log lines to a run by hand."""
        with self.lock:
            run.append(*lines)

    def _start(self, run: Run, wall: float, mono: float) -> None:
        run.start(wall, mono)
        images = run.input.get("images")
        if self.config.check_input_files and isinstance(images, str):
            ours, stored = self.file_for_url(images)
            if ours and stored is None:
                self._fail(run, wall, mono, f"Failed to download {images}: 404 Not Found")

    def _fail(self, run: Run, wall: float, mono: float, error: str) -> None:
        run.append(*failure_lines(error))
        run.finish("failed", wall, mono, error=error)

    def _succeed(self, run: Run, wall: float, mono: float, override: Any = UNSET) -> None:
        output = override if override is not UNSET else run.script.output
        if output is UNSET:
            output = self._computed_output(run)
        if run.trainer:
            plan = plan_for(run.input, run.script.total_steps or self.config.total_steps)
            run.append(*trainer_success_lines(plan, "/src/output"))
        run.finish("succeeded", wall, mono, output=output)

    def _computed_output(self, run: Run) -> Any:
        deliveries = f"{self.web_root}/_fake/deliveries/{run.id}"
        if run.kind == "training" and run.destination:
            owner, _, name = run.destination.partition("/")
            model = self.get_model(owner, name)
            version_id = new_version_id()
            if model is not None:
                self.add_version(model, lora_schema(), version_id=version_id)
            return {
                "version": f"{run.destination}:{version_id}",
                "weights": f"{deliveries}/trained_model.tar",
            }
        if run.trainer:
            hub = run.input.get("hub_model_id")
            if hub:
                return f"https://huggingface.co/{hub}"
            bucket = run.input.get("s3_bucket")
            if bucket:
                return f"s3://{bucket}/{run.input.get('s3_base_path') or run.id}"
            return "Training complete. Output: /src/output"
        return [f"{deliveries}/out-0.webp"]

    def delivery_bytes(self, run_id: str, name: str) -> bytes | None:
        """Bytes served at ``/_fake/deliveries/{run}/{name}``: a small tar for ``*.tar``."""
        with self.lock:
            if run_id not in self.runs:
                return None
        if name.endswith(".tar"):
            buffer = io.BytesIO()
            with tarfile.open(fileobj=buffer, mode="w") as archive:
                for member, content in (
                    ("lora.safetensors", b"\0" * 64),
                    ("README.md", f"run {run_id}\n".encode()),
                ):
                    info = tarfile.TarInfo(member)
                    info.size = len(content)
                    archive.addfile(info, io.BytesIO(content))
            return buffer.getvalue()
        return f"fake output {name} of run {run_id}\n".encode()

    def tick(self) -> list[WebhookMessage]:
        """Advance every live run by the clock; return the webhook messages that are due now."""
        messages: list[WebhookMessage] = []
        with self.lock:
            wall, mono = time.time(), time.monotonic()
            for run in self.runs.values():
                if run.terminal and not run.pending_events and not self.planner.has_pending(run.id):
                    continue
                self._advance(run, wall, mono)
                message = self.planner.plan(run, mono, self.config, self.root, self.generation)
                if message is not None:
                    messages.append(message)
        return messages

    def _advance(self, run: Run, wall: float, mono: float) -> None:
        if run.terminal:
            return
        if run.deadline is not None and wall >= run.deadline:
            run.finish("aborted" if run.status == "starting" else "canceled", wall, mono)
            return
        if (
            run.status == "starting"
            and run.starting_seconds is not None
            and mono - run.created_mono >= run.starting_seconds
        ):
            self._start(run, wall, mono)
        if run.status != "processing" or run.started_mono is None:
            return
        run.emit_due_lines(mono)
        if run.script.outcome != "hang" and mono - run.started_mono >= run.processing_seconds:
            if run.script.outcome == "succeed":
                if run.delivery == "failed":
                    self._fail(run, wall, mono, run.delivery_error or DEFAULT_ERROR)
                elif not self._delivering(run):
                    self._succeed(run, wall, mono)
            else:
                self._fail(run, wall, mono, run.script.error or DEFAULT_ERROR)

    def _delivering(self, run: Run) -> bool:
        """Start (or continue) a trainer run's upload of its outputs; True while it is under way.

        The upload runs in a thread, outside the lock; the tick after it ends, the run succeeds, or
        fails with the upload's error (see ``delivery.py``), so that its final webhook is planned in
        the same tick as the change of status, as for any other run.
        """
        if run.delivery == "delivering":
            return True
        if run.delivery is not None or not run.trainer:
            return False
        if not needs_delivery(run.input, self.config.hf_endpoint):
            return False
        run.delivery = "delivering"
        total = plan_for(run.input, run.script.total_steps or self.config.total_steps).total_steps
        options = {
            "total_steps": total,
            "hf_endpoint": self.config.hf_endpoint,
            "checkpoint_bytes": self.config.delivery_checkpoint_bytes,
        }
        threading.Thread(
            target=self._deliver, args=(run, self.generation, options), name=f"deliver-{run.id}", daemon=True
        ).start()
        return True

    def _deliver(self, run: Run, generation: int, options: dict[str, Any]) -> None:
        result = deliver(run.id, dict(run.input), **options)
        with self.lock:
            if generation != self.generation or run.terminal:
                return
            run.append(*result.lines)
            run.delivered = result.uploaded
            run.delivery_error = result.error
            run.delivery = "failed" if result.error is not None else "delivered"

    # ----------------------------------------------------------------- introspection
    def record_request(self, record: RequestRecord) -> None:
        """Remember a received request."""
        with self.lock:
            self.requests.append(record)

    def query_runs(self, filters: dict[str, Any]) -> list[Run]:
        """Runs (oldest first) matching every filter.

        Keys: ``kind``, ``status``, ``model``, ``version``, ``destination``, ``webhook`` (exact),
        ``webhook_contains`` (substring), and ``input.<key>`` (the input value equals it; non-string
        values compare by their JSON text, e.g. ``"true"`` or ``"100"``).
        """
        with self.lock:
            found = sorted(self.runs.values(), key=lambda r: r.seq)
        for key, expected in filters.items():
            if expected is None:
                continue
            if key == "webhook_contains":
                found = [r for r in found if r.webhook is not None and str(expected) in r.webhook]
            elif key.startswith("input."):
                name = key[len("input.") :]

                def same(value: Any, want: Any = expected) -> bool:
                    if value == want:
                        return True
                    text = value if isinstance(value, str) else json.dumps(value)
                    return text == (want if isinstance(want, str) else json.dumps(want))

                found = [r for r in found if name in r.input and same(r.input[name])]
            elif key in ("kind", "status", "model", "version", "destination", "webhook"):
                found = [r for r in found if getattr(r, key) == expected]
            else:
                raise ValueError(f"unknown run filter {key!r}")
        return found

    def runs_by_webhook(self) -> dict[str, int]:
        """Number of runs created per webhook URL (runs without one count under ``""``)."""
        with self.lock:
            counts: dict[str, int] = {}
            for run in self.runs.values():
                counts[run.webhook or ""] = counts.get(run.webhook or "", 0) + 1
            return counts


__all__ = ["TERMINAL", "FakeState", "RequestRecord", "StoredFile"]
