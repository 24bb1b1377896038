"""The signed Replicate webhook deliveries of ``webhook_ingestion.py``, built as Replicate sends them.

Not a benchmark itself. A :class:`Job` is one running job and what the bench has told the server
about it so far; :class:`DeliveryBuilder` makes its next delivery: the run's whole prediction as
the body (a log grown by a few SimpleTuner progress lines; at the last one ``succeeded`` or
``failed`` for a share of the jobs), signed with Standard Webhooks headers (:func:`sign`) and
written out as one hand-made HTTP/1.1 request, with a retry (same ``webhook-id``, new timestamp
and signature) for a share of them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import random
import time
from dataclasses import dataclass, field
from typing import Any

from _harness import HOST

HOOK_PATH = "/api/webhooks/replicate"
STEP_STRIDE = 5  # training steps between two progress lines
SUCCEED_EVERY = 4  # every 4th job ends succeeded ...
FAIL_EVERY = 20  # ... every 20th (offset by 7) ends failed; the rest stay running
FAIL_OFFSET = 7
ERROR_TEXT = "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 44.53 GiB total capacity)"
LEARNING_RATE = "0.0001"


@dataclass
class Job:
    """One job and what the bench has told the server about it so far."""

    index: int
    job_id: str
    run_id: str = ""
    prediction: dict[str, Any] = field(default_factory=dict)
    logs: str = ""
    step: int = 0
    sent: int = 0  # deliveries built so far (webhook ids are numbered by it)
    final_status: str = "running"  # the status its last delivery implies
    final_logs: str = ""

    @property
    def outcome(self) -> str:
        if self.index % FAIL_EVERY == FAIL_OFFSET:
            return "failed"
        if self.index % SUCCEED_EVERY == 0:
            return "completed"
        return "running"


def sign(key: bytes, webhook_id: str, timestamp: int, body: bytes) -> str:
    """Standard Webhooks: ``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``."""
    digest = hmac.new(key, f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def progress_line(step: int, total: int, loss: float) -> str:
    """A SimpleTuner tqdm line, e.g. ``Epoch 2/9, Steps:  12%|█         | 120/1000 [...]``."""
    percent = 100 * step // total
    bar = ("█" * (percent // 10)).ljust(10)
    epochs = max(1, math.ceil(total / 120))
    epoch = min(epochs, 1 + (step - 1) // 120)
    elapsed, remaining = int(step * 1.6), int((total - step) * 1.6)
    return (
        f"Epoch {epoch}/{epochs}, Steps: {percent:3d}%|{bar}| {step}/{total} "
        f"[{elapsed // 60:02d}:{elapsed % 60:02d}<{remaining // 60:02d}:{remaining % 60:02d}, "
        f"1.60s/it, lr={LEARNING_RATE}, step_loss={loss:.4f}]"
    )


def iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int(seconds % 1 * 1e6):06d}Z"


@dataclass
class Delivery:
    """One request to send and the reply it must get."""

    job: int
    request: bytes
    duplicate: bool
    status: str  # the job status the reply must show (ignored for duplicates)


class DeliveryBuilder:
    """Makes each job's next delivery: the prediction with a longer log, signed now."""

    def __init__(
        self, secret: str, port: int, total_steps: int, *, lines_per_event: int, duplicates: float, seed: int
    ) -> None:
        """Sign with ``secret`` for the server on ``port``; ``duplicates`` is the share sent twice."""
        self.key = base64.b64decode(secret.removeprefix("whsec_"))
        self.port = port
        self.total_steps = total_steps
        self.lines_per_event = lines_per_event
        self.rng = random.Random(seed)
        self.duplicates = duplicates
        self.timestamp = int(time.time())

    def request(self, job: Job, webhook_id: str, body: bytes, timestamp: int) -> bytes:
        head = (
            f"POST {HOOK_PATH}?job_id={job.job_id} HTTP/1.1\r\n"
            f"Host: {HOST}:{self.port}\r\n"
            "User-Agent: Replicate-Webhook/1.0\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n"
            f"webhook-id: {webhook_id}\r\n"
            f"webhook-timestamp: {timestamp}\r\n"
            f"webhook-signature: {sign(self.key, webhook_id, timestamp, body)}\r\n"
            "\r\n"
        )
        return head.encode() + body

    def next(self, job: Job, *, last: bool) -> list[Delivery]:
        """Return the job's next delivery (and its retry, for a share of them)."""
        prediction = dict(job.prediction)
        lines = []
        for _ in range(self.lines_per_event):
            job.step = min(self.total_steps, job.step + STEP_STRIDE)
            loss = 0.04 + 0.14 * math.exp(-3.0 * job.step / self.total_steps) + self.rng.uniform(-0.01, 0.01)
            lines.append(progress_line(job.step, self.total_steps, loss))
        job.logs += "".join(line + "\n" for line in lines)
        status = "running"
        if last and job.outcome == "completed":
            job.logs += f"Saving checkpoint to /outputs/flux-lora-{job.index}/checkpoint-{job.step}\n"
            job.logs += f"Training complete. Output: /outputs/flux-lora-{job.index}\n"
            prediction.update(
                status="succeeded",
                completed_at=iso(time.time()),
                output=f"https://replicate.delivery/xezq/{job.run_id}/trained_model.tar",
                metrics={"predict_time": 1834.2, "total_time": 1840.7},
            )
            status = "completed"
        elif last and job.outcome == "failed":
            job.logs += (
                f'Traceback (most recent call last):\n  File "/src/train.py", line 212\nRuntimeError: {ERROR_TEXT}\n'
            )
            prediction.update(
                status="failed", completed_at=iso(time.time()), error=ERROR_TEXT, metrics={"predict_time": 911.5}
            )
            status = "failed"
        else:
            prediction["status"] = "processing"
        prediction["logs"] = job.logs
        body = json.dumps(prediction, ensure_ascii=False).encode()
        job.sent += 1
        webhook_id = f"msg_{job.run_id}_{job.sent:05d}"
        job.final_status, job.final_logs = status, job.logs
        deliveries = [Delivery(job.index, self.request(job, webhook_id, body, self.timestamp), False, status)]
        if self.rng.random() < self.duplicates:
            # A retry: same id and body, new attempt time and signature.
            deliveries.append(
                Delivery(job.index, self.request(job, webhook_id, body, self.timestamp + 1), True, status)
            )
        return deliveries
