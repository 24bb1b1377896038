"""Webhook security over real HTTP: signatures, stale timestamps, replays and the source allowlist.

Deliveries are captured from the fake Replicate's webhook log (headers and body as sent) and sent
again by the test, altered or not, to the real server's ``POST /api/webhooks/replicate``.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import ServerFactory, ServerProcess
from tests.e2e.replicate_support import (
    SHORT_RUNS,
    assert_forward_only,
    captured_headers,
    event_causes,
    fake_process,
    fresh_fake,
    job_logs,
    only_run,
    post_webhook,
    replicate_server,
    seed_submission,
    signed_headers,
    submit,
    wait_for_job,
    wait_for_logs,
)
from tests.fakes.replicate import FakeProcess, FakeReplicateRemote
from tests.support.waiting import wait_until_sync

WRONG_SECRET = "whsec_" + base64.b64encode(b"not-the-account-secret").decode()


@pytest.fixture(scope="module")
def fake_proc() -> Iterator[FakeProcess]:
    yield from fake_process()


@pytest.fixture
def fake(fake_proc: FakeProcess) -> Iterator[FakeReplicateRemote]:
    """The module's fake, reset, with short runs."""
    yield from fresh_fake(fake_proc, **SHORT_RUNS)


def wait_until_quiet(server: ServerProcess, job_id: str, fake: FakeReplicateRemote, run_id: str) -> None:
    """Wait until the run's log has not changed for a second and the job's log equals it."""
    seen: dict[str, Any] = {"logs": None, "since": time.monotonic()}

    def probe() -> bool:
        logs: str = fake.run(run_id)["logs"]
        if logs != seen["logs"]:
            seen.update(logs=logs, since=time.monotonic())
        quiet = time.monotonic() - float(seen["since"]) >= 1.0
        return quiet and job_logs(server, job_id) == logs

    wait_until_sync(probe, bool, timeout=20)


def observable(server: ServerProcess, job_id: str) -> dict[str, Any]:
    """What a webhook could change on a job."""
    job = server.job(job_id)
    keys = ("status", "progress", "cost_usd", "error", "finished_at", "provider_job_id", "updated_at", "events")
    return {**{key: job[key] for key in keys}, "logs": job_logs(server, job_id)}


def test_bad_signatures_stale_timestamps_and_replays_change_nothing(
    tmp_path: Path, servers: ServerFactory, fake: FakeReplicateRemote
) -> None:
    server = replicate_server(servers, fake, webhooks=True, reconcile_seconds=600)
    # The run stays "processing" (its log stops early), so a forged "succeeded" would show.
    fake.script_next(outcome="hang", processing_seconds=0.5)
    job_id = submit(server, seed_submission(tmp_path))
    wait_for_job(server, job_id, "running")
    run = only_run(fake, job_id)

    # Once the run's log has stopped growing and the server holds all of it, capture the last
    # delivery as it was sent.
    wait_until_quiet(server, job_id, fake, run["id"])
    captured = fake.wait_for_webhooks(1, run["id"], outcome="delivered")[-1]
    assert captured["response_status"] == 200, captured
    before = observable(server, job_id)
    assert before["status"] == "running", before

    # A body that would complete the job if it were believed.
    forged = {
        **json.loads(captured["body"]),
        "status": "succeeded",
        "output": "Training complete. Output: /src/output",
        "metrics": {"predict_time": 1234.5},
        "logs": json.loads(captured["body"])["logs"] + "Training complete. Output: /src/output\n",
    }
    forged_body = json.dumps(forged).encode()

    # 1. Signed with another secret.
    reply = post_webhook(server, job_id, forged_body, signed_headers(WRONG_SECRET, "msg_forged_1", forged_body))
    assert reply.status_code == 401, reply.text
    assert reply.json()["code"].startswith("webhook_"), reply.json()
    # 1b. The genuine signature of another body (the captured one) on the forged body.
    tampered = {**captured_headers(captured)}
    reply = post_webhook(server, job_id, forged_body, tampered)
    assert reply.status_code == 401, reply.text
    # 1c. No signature at all.
    reply = post_webhook(server, job_id, forged_body, {"content-type": "application/json"})
    assert reply.status_code == 401, reply.text

    # 2. Correctly signed, but ten minutes old.
    stale = signed_headers(fake.webhook_secret, "msg_forged_2", forged_body, timestamp=int(time.time()) - 600)
    reply = post_webhook(server, job_id, forged_body, stale)
    assert reply.status_code == 401, reply.text
    assert reply.json()["code"].startswith("webhook_"), reply.json()

    # 3. A real delivery, replayed byte for byte.
    reply = post_webhook(server, job_id, captured["body"].encode(), captured_headers(captured))
    assert reply.status_code == 200, reply.text
    assert reply.json()["duplicate"] is True, reply.json()

    assert observable(server, job_id) == before

    # The same forged body, signed with the account's secret and fresh: now it is believed.
    # (So the refusals above were the signature's doing, nothing else.)
    reply = post_webhook(server, job_id, forged_body, signed_headers(fake.webhook_secret, "msg_forged_3", forged_body))
    assert reply.status_code == 200, reply.text
    assert reply.json()["duplicate"] is False and reply.json()["status"] == "completed", reply.json()
    assert server.job(job_id)["status"] == "completed"


def test_disallowed_source_ip_refuses_the_fakes_webhooks_and_polling_completes_the_job(
    tmp_path: Path, servers: ServerFactory, fake: FakeReplicateRemote
) -> None:
    server = replicate_server(servers, fake, webhooks=True, reconcile_seconds=1.0)
    with server.http() as http:
        reply = http.put("/api/cloud/providers/replicate", json={"webhook_allowed_ips": ["192.0.2.0/24"]})
        assert reply.status_code == 200, reply.text
        assert reply.json()["settings"]["webhook_allowed_ips"] == ["192.0.2.0/24"], reply.json()

    job_id = submit(server, seed_submission(tmp_path))
    job = wait_for_job(server, job_id, "completed")
    run = only_run(fake, job_id)

    fake.wait_for_webhooks(1, run["id"], event="completed")
    deliveries = fake.webhooks(run["id"])
    assert deliveries and all(d["response_status"] == 403 for d in deliveries), deliveries
    assert all(json.loads(d["response_body"])["code"] == "webhook_source_forbidden" for d in deliveries), deliveries
    assert not any(cause.startswith("webhook") for cause in event_causes(job)), job["events"]
    assert assert_forward_only(job)[-1] == "completed"
    wait_for_logs(server, job_id, fake.run(run["id"])["logs"])


def test_x_forwarded_for_is_believed_only_from_trusted_proxies(
    servers: ServerFactory, fake: FakeReplicateRemote
) -> None:
    """The allowlist judges the TCP peer (here 127.0.0.1); a client cannot claim another address
    with X-Forwarded-For unless its peer is one of the Cloud settings' trusted proxies."""
    server = replicate_server(servers, fake, webhooks=True, reconcile_seconds=600)
    with server.http() as http:
        reply = http.put("/api/cloud/providers/replicate", json={"webhook_allowed_ips": ["192.0.2.0/24"]})
        assert reply.status_code == 200, reply.text
    body = json.dumps({"id": "p_unknown", "status": "succeeded"}).encode()
    # Badly signed on purpose: a sender the allowlist lets through gets 401 from the signature check.
    headers = signed_headers(WRONG_SECRET, "msg_forwarded", body)
    job_id = "01aaaaaaaaaaaaaaaaaaaaaaaa"

    reply = post_webhook(server, job_id, body, headers)
    assert reply.status_code == 403, reply.text
    assert reply.json()["code"] == "webhook_source_forbidden", reply.json()

    forged = {**headers, "x-forwarded-for": "192.0.2.7"}
    reply = post_webhook(server, job_id, body, forged)
    assert reply.status_code == 403, (
        f"a client at 127.0.0.1 (not a trusted proxy) got past webhook_allowed_ips by sending "
        f"X-Forwarded-For: 192.0.2.7: {reply.status_code} {reply.text}"
    )

    with server.http() as http:
        reply = http.put("/api/cloud/settings", json={"trusted_proxies": ["127.0.0.1/32"]})
        assert reply.status_code == 200, reply.text
    reply = post_webhook(server, job_id, body, forged)
    assert reply.status_code == 401, reply.text  # now believed: past the allowlist, refused by signature
