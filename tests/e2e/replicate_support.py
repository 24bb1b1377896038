"""Helpers of the Replicate e2e tests: the fake Replicate process, servers pointed at it, datasets.

The fake runs as its own process (``tests.fakes.replicate.spawn``), one per test module, and is
reset before every test; a cloudtuner server process (``ServerFactory``) is pointed at it with
``CLOUDTUNER_REPLICATE_API_URL`` and ``REPLICATE_API_TOKEN``. With ``webhooks=True`` the server
gets ``CLOUDTUNER_PUBLIC_URL=http://127.0.0.1:<its port>``, so the fake delivers webhooks to it.

Every wait is a poll with a deadline. Nothing here works around the product: a helper that finds
the product misbehaving fails the test with what it saw.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from tests.e2e.harness import TERMINAL, ServerFactory, ServerProcess
from tests.fakes.replicate import FakeProcess, FakeReplicateRemote, sign, spawn
from tests.support.waiting import wait_until_sync

__all__ = [
    "ENV_NAME",
    "FAKE_CONFIG",
    "L40S_PRICE_PER_SECOND",
    "SEED_CONFIG",
    "SHORT_RUNS",
    "SLIP_NAME",
    "SYMLINK_NAME",
    "TOKEN",
    "Dataset",
    "assert_forward_only",
    "captured_headers",
    "describe_fake",
    "download_archive",
    "event_causes",
    "fake_process",
    "fresh_fake",
    "job_logs",
    "make_dataset",
    "only_run",
    "post_webhook",
    "replicate_server",
    "runs_for_job",
    "seed_body",
    "seed_submission",
    "sign",
    "signed_headers",
    "submit",
    "trainer_input_keys",
    "wait_for_job",
    "wait_for_logs",
]

TOKEN = "r8_e2eReplicateToken000000000000000000000"  # a token the fake accepts
L40S_PRICE_PER_SECOND = 0.000975
"""Replicate's published price of one L40S second (the seeds' default hardware)."""

FAKE_CONFIG: dict[str, Any] = {
    "tokens": [TOKEN],
    "starting_seconds": 0.3,
    "processing_seconds": 2.0,
    "log_steps": 5,
    "tick_seconds": 0.02,
    "webhook_retry_delays": [0.2, 0.5, 1.0],
    "webhook_timeout_seconds": 5.0,
    # A trainer input the model does not declare makes the create call fail (422): the job would fail.
    "reject_unknown_input": True,
}
"""How the fake runs for these tests: quick runs, quick webhook retries, strict input checks."""

SHORT_RUNS: dict[str, Any] = {"starting_seconds": 0.2, "processing_seconds": 1.0}
"""``fresh_fake`` settings for tests that need no more than a run's start and end: shorter runs."""

SEED_CONFIG: dict[str, Any] = {
    "--model_family": "flux",
    "--model_type": "lora",
    "--pretrained_model_name_or_path": "black-forest-labs/FLUX.1-dev",
    "--output_dir": "/outputs/flux-lora",
    "--max_train_steps": 1000,
    "--lora_rank": 16,
}
"""The seed tutorial's inline config, as in its curl submission."""

JOB_ORDER = ("queued", "uploading", "starting", "running")


# --- the fake -----------------------------------------------------------------------------------


def fake_process() -> Iterator[FakeProcess]:
    """Run the fake Replicate as a separate process for the duration of a fixture."""
    process = spawn(config=FAKE_CONFIG)
    try:
        yield process
    finally:
        process.stop()


def fresh_fake(process: FakeProcess, **config: Any) -> Iterator[FakeReplicateRemote]:
    """Reset the fake (and apply ``config``) for one test; print what it saw when the test ends.

    The printout is captured by pytest and shown only in a failed test's report.
    """
    remote = process.remote
    remote.reset()
    if config:
        remote.configure(**config)
    yield remote
    print(describe_fake(remote))


def describe_fake(fake: FakeReplicateRemote) -> str:
    """The fake's request log, runs and webhook deliveries, one line each."""
    lines = ["--- fake Replicate: requests"]
    lines += [
        f"{r['time']} {r['method']} {r['path']}{'?' + r['query'] if r['query'] else ''} -> {r['status']}"
        + (f" [fault {r['fault_kind']}]" if r["fault_kind"] else "")
        for r in fake.requests()
    ]
    lines.append("--- fake Replicate: runs")
    lines += [f"{r['id']} {r['status']} webhook={r['webhook']} error={r['error']}" for r in fake.runs()]
    lines.append("--- fake Replicate: webhook deliveries")
    lines += [
        f"{d['sent_at']} {d['run_id']} {d['events']} {d['run_status']} -> {d['outcome']} {d['response_status']}"
        + (" duplicate" if d["duplicate"] else "")
        + (" reordered" if d["reordered"] else "")
        for d in fake.webhooks()
    ]
    return "\n".join(lines)


def runs_for_job(fake: FakeReplicateRemote, job_id: str) -> list[dict[str, Any]]:
    """Return the fake's runs made for one cloudtuner job, oldest first.

    A run is the job's when its webhook URL names the job (``?job_id=``) or its config carries the
    run name cloudtuner gives a job that names none (``cloudtuner-<job id>``).
    """
    found = []
    for run in fake.runs():
        webhook = run.get("webhook") or ""
        config_text = run["input"].get("config_json")
        config = json.loads(config_text) if isinstance(config_text, str) else {}
        if f"job_id={job_id}" in webhook or config.get("--tracker_run_name") == f"cloudtuner-{job_id}":
            found.append(run)
    return found


def only_run(fake: FakeReplicateRemote, job_id: str) -> dict[str, Any]:
    """Return the one prediction the fake holds for the job; fail if it holds none or several."""
    runs = runs_for_job(fake, job_id)
    assert len(runs) == 1, f"job {job_id} has {len(runs)} runs at Replicate: {[r['id'] for r in runs]}"
    return runs[0]


def download_archive(fake: FakeReplicateRemote, images_url: str) -> zipfile.ZipFile:
    """Read back the archive a run was given, through the fake's signed file download."""
    file_id = urlsplit(images_url).path.rstrip("/").rsplit("/", 1)[-1]
    reply = httpx.get(fake.file_download_url(file_id), timeout=30.0, trust_env=False)
    assert reply.status_code == 200, reply.text
    return zipfile.ZipFile(io.BytesIO(reply.content))


def trainer_input_keys(fake: FakeReplicateRemote, model: str, version: str) -> set[str]:
    """Return the inputs the trainer version declares (its Cog schema), read from the fake's API."""
    reply = httpx.get(
        f"{fake.base_url}/models/{model}/versions/{version}",
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10.0,
        trust_env=False,
    )
    assert reply.status_code == 200, reply.text
    schemas = reply.json()["openapi_schema"]["components"]["schemas"]
    schema = schemas.get("TrainingInput") or schemas["Input"]
    return set(schema["properties"])


# --- servers ------------------------------------------------------------------------------------


def replicate_server(
    servers: ServerFactory,
    fake: FakeReplicateRemote,
    *,
    webhooks: bool,
    reconcile_seconds: float = 0.3,
    name: str = "server",
) -> ServerProcess:
    """Start a cloudtuner server that sends Replicate calls to the fake.

    ``webhooks``: the server has a public URL on loopback, so runs are created with webhooks to
    it; otherwise the scheduler only polls. ``reconcile_seconds`` is the polling interval.
    """
    server = servers.create(
        name,
        env={
            "CLOUDTUNER_REPLICATE_API_URL": fake.base_url,
            "REPLICATE_API_TOKEN": TOKEN,
            "CLOUDTUNER_RECONCILE_INTERVAL_SECONDS": str(reconcile_seconds),
        },
    )
    if webhooks:
        server.extra_env["CLOUDTUNER_PUBLIC_URL"] = server.url
    return server.start()


def submit(server: ServerProcess, body: dict[str, Any]) -> str:
    """Submit a job to Replicate over HTTP; return its id."""
    return server.submit(body, provider="replicate")


def wait_for_job(server: ServerProcess, job_id: str, status: str, timeout: float = 30.0) -> dict[str, Any]:
    """Wait until the job is ``status``; fail at once if it ends in another state."""
    return server.wait_for_status(job_id, status, timeout=timeout)


def job_logs(server: ServerProcess, job_id: str) -> str:
    """Return the job's whole stored log."""
    with server.http() as http:
        reply = http.get(f"/api/cloud/jobs/{job_id}/logs")
    assert reply.status_code == 200, reply.text
    logs: str = reply.json()["logs"]
    return logs


def wait_for_logs(server: ServerProcess, job_id: str, expected: str, timeout: float = 15.0) -> str:
    """Wait until the job's stored log equals ``expected`` (the run's whole log at the fake)."""
    return wait_until_sync(lambda: job_logs(server, job_id), lambda logs: logs == expected, timeout=timeout)


def event_causes(job: dict[str, Any]) -> list[str]:
    """Return the causes of the job's timeline events, oldest first."""
    return [event["cause"] for event in job["events"]]


def assert_forward_only(job: dict[str, Any], *, requeues: bool = False) -> list[str]:
    """Check the job's timeline is a chain that only moves forward; return its states in order.

    Each event starts where the previous one ended. Without ``requeues`` no event goes back
    (``queued → uploading → starting → running → final``, skips allowed); with it, a move back to
    ``queued`` caused by a requeue is allowed too. Nothing follows a final state.
    """
    events = job["events"]
    states = [event["to_status"] for event in events]
    assert events and events[0]["from_status"] is None and states[0] == "queued", events
    for previous, event in itertools.pairwise(events):
        assert event["from_status"] == previous["to_status"], f"broken chain at {event}: {events}"
        before, after = previous["to_status"], event["to_status"]
        assert before not in TERMINAL, f"a move out of the final state {before}: {events}"
        if after in TERMINAL:
            continue
        if after == "queued" and requeues:
            assert "requeue" in event["cause"], f"a move back to queued that is not a requeue: {events}"
            continue
        assert JOB_ORDER.index(after) > JOB_ORDER.index(before), f"a backwards move {before} -> {after}: {events}"
    return states


# --- webhooks sent by hand ----------------------------------------------------------------------


def signed_headers(secret: str, webhook_id: str, body: bytes, *, timestamp: int | None = None) -> dict[str, str]:
    """Return Standard Webhooks headers for ``body``, signed with the fake's secret."""
    when = int(time.time()) if timestamp is None else timestamp
    return {
        "content-type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(when),
        "webhook-signature": sign(secret, webhook_id, when, body),
    }


def captured_headers(delivery: dict[str, Any]) -> dict[str, str]:
    """Return the headers the fake sent with a delivery from its webhook log, to send it again."""
    return {
        "content-type": "application/json",
        "webhook-id": delivery["message_id"],
        "webhook-timestamp": str(delivery["webhook_timestamp"]),
        "webhook-signature": delivery["signature"],
    }


def post_webhook(server: ServerProcess, job_id: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    """POST a delivery to the server's Replicate webhook route, as the fake would."""
    with server.http() as http:
        return http.post("/api/webhooks/replicate", params={"job_id": job_id}, content=body, headers=headers)


# --- datasets -----------------------------------------------------------------------------------


@dataclass
class Dataset:
    """A small local dataset with traps: what is in it, and what must not be uploaded."""

    folder: Path
    images: dict[str, bytes] = field(default_factory=dict)
    captions: dict[str, bytes] = field(default_factory=dict)
    outside_file: Path | None = None
    outside_content: bytes = b""
    env_content: bytes = b""

    @property
    def uploaded(self) -> dict[str, bytes]:
        """The files that must reach Replicate, by name inside the dataset."""
        return {**self.images, **self.captions}


ENV_NAME = ".env"
SYMLINK_NAME = "linked.jpg"
SLIP_NAME = "..\\..\\escaped.txt"
"""A zip-slip name: on Linux a plain file name, unpacked on Windows-like tools as a path upwards."""


def make_dataset(root: Path, *, images: int = 3, image_bytes: int = 4096) -> Dataset:
    """Create ``root/my-dataset`` with random-byte .jpg images, their .txt captions, a ``.env``
    with a fake secret, a symlink to a file outside the dataset, and a zip-slip name."""
    folder = root / "datasets" / "my-dataset"
    folder.mkdir(parents=True)
    dataset = Dataset(folder=folder)
    for index in range(images):
        image = os.urandom(image_bytes)
        caption = f"a photo of sks dog, pose {index}".encode()
        (folder / f"img_{index:02d}.jpg").write_bytes(image)
        (folder / f"img_{index:02d}.txt").write_bytes(caption)
        dataset.images[f"img_{index:02d}.jpg"] = image
        dataset.captions[f"img_{index:02d}.txt"] = caption
    dataset.env_content = b"HF_TOKEN=hf_e2eSecretThatMustNotLeave\n"
    (folder / ENV_NAME).write_bytes(dataset.env_content)
    outside = root / "outside" / "private.jpg"
    outside.parent.mkdir(parents=True)
    dataset.outside_content = b"OUTSIDE-THE-DATASET-" + os.urandom(64).hex().encode()
    outside.write_bytes(dataset.outside_content)
    dataset.outside_file = outside
    (folder / SYMLINK_NAME).symlink_to(outside)
    (folder / SLIP_NAME).write_bytes(b"zip slip")
    return dataset


def seed_body(dataset_folder: Path, *, consent: bool | None = True, **extra: Any) -> dict[str, Any]:
    """Return the seed tutorial's inline-config submission, with its dataset in ``dataset_folder``."""
    body: dict[str, Any] = {
        "config": dict(SEED_CONFIG),
        "dataloader_config": [
            {
                "id": "training-images",
                "type": "local",
                "dataset_type": "image",
                "instance_data_dir": str(dataset_folder),
                "caption_strategy": "textfile",
                "resolution": 1024,
            }
        ],
    }
    if consent is not None:
        body["upload_consent"] = consent
    body.update(extra)
    return body


def seed_submission(root: Path) -> dict[str, Any]:
    """Return the seed tutorial's submission, with upload consent, of a fresh dataset under ``root``."""
    return seed_body(make_dataset(root).folder)
