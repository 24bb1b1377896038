"""Webhook signing, planning (event filter and throttle) and delivery.

* :func:`sign` implements the Standard Webhooks scheme Replicate uses: HMAC-SHA256 over
  ``"{webhook-id}.{webhook-timestamp}.{body}"`` with the base64-decoded part of the ``whsec_`` secret,
  sent as ``webhook-signature: v1,<base64>``.
* :class:`WebhookPlanner` turns run events into messages: ``start`` and terminal messages go out at
  once, ``logs``/``output`` at most once per ``webhook_throttle_seconds`` per run (coalesced).
* :class:`WebhookDispatcher` sends messages from the server's event loop, one run at a time in
  order, retrying only terminal messages on a non-2xx reply or a connection error.  It applies the
  webhook fault rules and records every attempt.  It only ever connects to loopback addresses.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import json
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from .config import FakeConfig
from .faults import FaultBook, WebhookFault
from .runs import Run
from .util import iso, new_message_id

INTERMEDIATE = frozenset({"logs", "output"})


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256>`` of ``{message_id}.{timestamp}.{body}`` under a ``whsec_`` secret."""
    prefix, _, encoded = secret.partition("_")
    if prefix != "whsec" or not encoded:
        raise ValueError("webhook secret must look like whsec_<base64>")
    key = base64.b64decode(encoded)
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def is_loopback_url(url: str) -> bool:
    """True for ``http(s)`` URLs whose host is ``localhost`` or a loopback IP literal.

    Host names other than ``localhost`` are never resolved, so nothing else can pass.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class WebhookMessage:
    """One logical webhook: the same ``message_id`` on every attempt and duplicate."""

    message_id: str
    run_id: str
    url: str
    events: tuple[str, ...]
    run_status: str
    body: bytes
    terminal: bool
    generation: int


@dataclass
class DeliveryRecord:
    """One attempt (or a dropped/refused message) as seen by introspection.

    ``outcome`` is ``delivered`` (2xx), ``failed`` (other status or connection error),
    ``dropped`` (a drop fault) or ``refused`` (non-loopback target, never contacted).
    """

    message_id: str
    run_id: str
    url: str
    events: list[str]
    run_status: str
    attempt: int
    outcome: str
    sent_at: str
    webhook_timestamp: int | None = None
    signature: str | None = None
    response_status: int | None = None
    response_body: str | None = None
    error: str | None = None
    duplicate: bool = False
    reordered: bool = False
    body: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON view."""
        return asdict(self)


class WebhookPlanner:
    """Decides, per tick, which run changes become webhook messages."""

    def __init__(self) -> None:
        self._last_intermediate: dict[str, float] = {}
        self._pending: dict[str, set[str]] = {}

    def reset(self) -> None:
        """Forget all throttle state."""
        self._last_intermediate.clear()
        self._pending.clear()

    def has_pending(self, run_id: str) -> bool:
        """Whether a throttled ``logs``/``output`` message is waiting for this run."""
        return run_id in self._pending

    def plan(self, run: Run, mono: float, config: FakeConfig, root: str, generation: int) -> WebhookMessage | None:
        """Consume ``run.pending_events`` and return the message to send now, if any."""
        events, run.pending_events = run.pending_events, set()
        if not run.webhook:
            return None
        wanted = set(run.events_filter)
        triggered = events & wanted
        if "completed" in events:
            self._pending.pop(run.id, None)
            if not triggered:
                return None
            return self._message(run, triggered, root, generation)
        intermediate = (triggered & INTERMEDIATE) | self._pending.get(run.id, set())
        if "start" in triggered:
            if intermediate:
                self._last_intermediate[run.id] = mono
                self._pending.pop(run.id, None)
            return self._message(run, triggered | intermediate, root, generation)
        if not intermediate:
            return None
        last = self._last_intermediate.get(run.id)
        if last is None or mono - last >= config.webhook_throttle_seconds:
            self._last_intermediate[run.id] = mono
            self._pending.pop(run.id, None)
            return self._message(run, intermediate, root, generation)
        self._pending[run.id] = intermediate
        return None

    @staticmethod
    def _message(run: Run, events: set[str], root: str, generation: int) -> WebhookMessage:
        assert run.webhook is not None
        return WebhookMessage(
            message_id=new_message_id(),
            run_id=run.id,
            url=run.webhook,
            events=tuple(sorted(events)),
            run_status=run.status,
            body=json.dumps(run.to_json(root)).encode(),
            terminal=run.terminal,
            generation=generation,
        )


@dataclass
class _Held:
    fault: WebhookFault
    since: float
    messages: list[WebhookMessage] = field(default_factory=list)


class WebhookDispatcher:
    """Sends planned messages; lives in the server's event loop (``submit``/``poll`` too)."""

    def __init__(self, config: Callable[[], FakeConfig], faults: FaultBook, generation: Callable[[], int]) -> None:
        """``config``/``generation`` read the state's current config and reset generation; messages
        planned before the latest reset are skipped."""
        self._config = config
        self._faults = faults
        self._generation = generation
        self._lock = threading.Lock()
        self.records: list[DeliveryRecord] = []
        self._queues: dict[str, asyncio.Queue[tuple[WebhookMessage, bool, bool]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._held: dict[str, _Held] = {}
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        """Open the HTTP client (no proxies from the environment, no redirects)."""
        self._client = httpx.AsyncClient(trust_env=False, follow_redirects=False)

    async def stop(self) -> None:
        """Cancel pending sends and close the client."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        self._queues.clear()
        if self._client is not None:
            await self._client.aclose()

    def reset(self) -> None:
        """Forget records and held messages (call after the state's reset, which starts a new
        generation so that queued older messages are skipped).  Thread-safe."""
        with self._lock:
            self.records.clear()
            self._held.clear()

    def snapshot(self) -> list[dict[str, Any]]:
        """All delivery records, oldest first."""
        with self._lock:
            return [r.to_dict() for r in self.records]

    def clear_records(self) -> None:
        """Forget delivery records."""
        with self._lock:
            self.records.clear()

    def _record(self, record: DeliveryRecord) -> None:
        with self._lock:
            self.records.append(record)

    def submit(self, message: WebhookMessage) -> None:
        """Apply webhook faults to a new message and queue it for its run's sender."""
        fault = self._faults.take_webhook_fault(message.run_id, message.events)
        if fault is not None and fault.kind == "drop":
            self._record(self._base_record(message, 1, "dropped"))
            return
        if fault is not None and fault.kind == "reorder":
            with self._lock:
                held = self._held.setdefault(fault.id, _Held(fault, time.monotonic()))
                held.messages.append(message)
                complete = fault.count == 0
            if complete:
                self._release(fault.id)
            return
        self._enqueue(message.run_id, message, duplicate=False, reordered=False)
        if fault is not None and fault.kind == "duplicate":
            self._enqueue(message.run_id, message, duplicate=True, reordered=False)

    def poll(self) -> None:
        """Release reorder batches whose ``hold_seconds`` have passed."""
        now = time.monotonic()
        with self._lock:
            due = [key for key, held in self._held.items() if now - held.since >= held.fault.hold_seconds]
        for key in due:
            self._release(key)

    def release_all(self) -> int:
        """Mark every held reorder batch as due (the next :meth:`poll` sends them); returns how many
        messages are held.  Thread-safe."""
        with self._lock:
            for held in self._held.values():
                held.since = float("-inf")
            return sum(len(h.messages) for h in self._held.values())

    def _release(self, key: str) -> None:
        with self._lock:
            held = self._held.pop(key, None)
        if held is None:
            return
        for message in reversed(held.messages):
            self._enqueue("__reordered__", message, duplicate=False, reordered=True)

    def _enqueue(self, lane: str, message: WebhookMessage, *, duplicate: bool, reordered: bool) -> None:
        queue = self._queues.get(lane)
        if queue is None:
            queue = asyncio.Queue()
            self._queues[lane] = queue
            task = asyncio.get_running_loop().create_task(self._worker(queue))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        queue.put_nowait((message, duplicate, reordered))

    async def _worker(self, queue: asyncio.Queue[tuple[WebhookMessage, bool, bool]]) -> None:
        while True:
            message, duplicate, reordered = await queue.get()
            await self._deliver(message, duplicate=duplicate, reordered=reordered)

    async def _deliver(self, message: WebhookMessage, *, duplicate: bool, reordered: bool) -> None:
        delays = self._config().webhook_retry_delays if message.terminal else ()
        for attempt in range(1, len(delays) + 2):
            if message.generation != self._generation():
                return
            if await self._attempt(message, attempt, duplicate=duplicate, reordered=reordered):
                return
            if attempt > len(delays):
                return
            await asyncio.sleep(delays[attempt - 1])

    def _base_record(self, message: WebhookMessage, attempt: int, outcome: str) -> DeliveryRecord:
        return DeliveryRecord(
            message_id=message.message_id,
            run_id=message.run_id,
            url=message.url,
            events=list(message.events),
            run_status=message.run_status,
            attempt=attempt,
            outcome=outcome,
            sent_at=iso(time.time()),
            body=message.body.decode(),
        )

    async def _attempt(self, message: WebhookMessage, attempt: int, *, duplicate: bool, reordered: bool) -> bool:
        config = self._config()
        record = self._base_record(message, attempt, "failed")
        record.duplicate, record.reordered = duplicate, reordered
        if not is_loopback_url(message.url):
            record.outcome = "refused"
            record.error = "fake Replicate only delivers webhooks to loopback addresses"
            self._record(record)
            return True
        timestamp = int(time.time() + config.webhook_timestamp_offset)
        record.webhook_timestamp = timestamp
        record.signature = sign(config.webhook_secret, message.message_id, timestamp, message.body)
        headers = {
            "content-type": "application/json",
            "user-agent": config.webhook_user_agent,
            "webhook-id": message.message_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": record.signature,
        }
        assert self._client is not None, "dispatcher not started"
        try:
            reply = await self._client.post(
                message.url, content=message.body, headers=headers, timeout=config.webhook_timeout_seconds
            )
        except httpx.HTTPError as exc:
            record.error = f"{type(exc).__name__}: {exc}"
            self._record(record)
            return False
        record.response_status = reply.status_code
        record.response_body = reply.text[:2000]
        ok = 200 <= reply.status_code < 300
        record.outcome = "delivered" if ok else "failed"
        self._record(record)
        return ok
