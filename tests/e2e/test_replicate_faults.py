"""Every fault switch of the fake Replicate, against a real server: the right final state, one run.

Each test arms a fault at the fake process, submits the seeds' job (with a small local dataset)
to a real ``cloudtuner server`` process pointed at the fake, and checks the state the job ends
in, and that the fake holds exactly one prediction for it, however the fault played out.

The provider's HTTP timeouts (30 s for a create call) are not settings a server can be given, so
"slow replies" use a moderate delay that must simply be ridden out; a reply that never comes is
covered by the fake's ``timeout_reply`` switch, which closes the connection after holding it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import ServerFactory
from tests.e2e.replicate_support import (
    L40S_PRICE_PER_SECOND,
    SHORT_RUNS,
    assert_forward_only,
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

CREATE = ("POST", "/v1/predictions")


@pytest.fixture(scope="module")
def fake_proc() -> Iterator[FakeProcess]:
    yield from fake_process()


@pytest.fixture
def fake(fake_proc: FakeProcess) -> Iterator[FakeReplicateRemote]:
    """The module's fake, reset, with shorter runs than the happy path's."""
    yield from fresh_fake(fake_proc, **SHORT_RUNS)


@pytest.fixture
def body(tmp_path: Path) -> dict[str, Any]:
    """The seeds' inline submission with a small local dataset and upload consent."""
    return seed_submission(tmp_path)


def moment(record: dict[str, Any]) -> float:
    return datetime.fromisoformat(record["time"].replace("Z", "+00:00")).timestamp()


# --- rate limits --------------------------------------------------------------------------------


def test_failed_reads_are_retried_honouring_retry_after_and_the_job_completes(
    servers: ServerFactory, fake: FakeReplicateRemote, body: dict[str, Any]
) -> None:
    """429 with Retry-After on the trainer's versions and on the run's status reads; a 503 and a
    cut connection on the file listing. Reads are retried; a 429's retry waits for Retry-After."""
    server = replicate_server(servers, fake, webhooks=False)
    fake.throttle_next(1, retry_after=1, method="GET", path="/v1/models/*")
    fake.throttle_next(2, retry_after=1, method="GET", path="/v1/predictions/*")
    fake.fail_next(503, 1, method="GET", path="/v1/files")
    fake.drop_reply_next(1, method="GET", path="/v1/files")

    job_id = submit(server, body)
    job = wait_for_job(server, job_id, "completed")
    run = only_run(fake, job_id)
    assert job["dispatch_attempts"] == 1, job
    assert fake.faults()["request_faults"] == [], "a fault was not hit"
    assert assert_forward_only(job)[-1] == "completed"

    listings = fake.requests("GET", "/v1/files")
    assert [(r["status"], r["fault_kind"]) for r in listings] == [(503, "status"), (None, "drop_reply"), (200, None)]
    for pattern in ("/v1/models/*", f"/v1/predictions/{run['id']}"):
        reads = fake.requests("GET", pattern)
        throttled = [n for n, r in enumerate(reads) if r["status"] == 429]
        assert throttled, reads
        for n in throttled:
            # The retry came after Retry-After (1 s), not after a shorter backoff of its own.
            assert n + 1 < len(reads), f"no retry after a 429: {reads}"
            gap = moment(reads[n + 1]) - moment(reads[n])
            assert gap >= 0.95, f"retried {gap:.2f} s after a 429 with Retry-After: 1: {reads}"


def test_throttled_create_is_requeued_without_counting_and_sent_again(
    servers: ServerFactory, fake: FakeReplicateRemote, body: dict[str, Any]
) -> None:
    """A 429 on the create call means nothing was made: the job goes back to the queue, the
    attempt is not counted, and the next create waits for Retry-After."""
    server = replicate_server(servers, fake, webhooks=False)
    fake.throttle_next(1, retry_after=1, method="POST", path="/v1/predictions")

    job_id = submit(server, body)
    job = wait_for_job(server, job_id, "completed")
    only_run(fake, job_id)
    assert job["dispatch_attempts"] == 1, job
    assert "requeued" in event_causes(job), job["events"]
    assert assert_forward_only(job, requeues=True)[-1] == "completed"
    assert len([r for r in fake.requests() if (r["method"], r["path"]) == CREATE]) == 2


def check_requeued_once(fake: FakeReplicateRemote, job: dict[str, Any]) -> None:
    """The job's first create call was refused without a run: it was looked for, then sent again."""
    assert job["dispatch_attempts"] == 2, job
    assert "requeued" in event_causes(job), job["events"]
    assert assert_forward_only(job, requeues=True)[-1] == "completed"
    calls = fake.requests()
    creates = [n for n, r in enumerate(calls) if (r["method"], r["path"]) == CREATE]
    assert len(creates) == 2, calls
    between = calls[creates[0] + 1 : creates[1]]
    assert any(r["method"] == "GET" and r["path"] == "/v1/predictions" for r in between), (
        f"the create call was sent again without looking for the run first: {between}"
    )


# --- server errors on the create call -----------------------------------------------------------


@pytest.mark.parametrize("created", [True, False], ids=["run-created", "run-not-created"])
def test_create_call_server_errors_make_exactly_one_run(
    created: bool, servers: ServerFactory, fake: FakeReplicateRemote, body: dict[str, Any]
) -> None:
    """500, 503 and 504 on the create call, when Replicate made the run anyway and when it did not."""
    server = replicate_server(servers, fake, webhooks=False)
    for status in (500, 503, 504):
        fake.clear_requests()
        fake.fail_next(status, 1, method="POST", path="/v1/predictions", process=created)
        job_id = submit(server, body)
        job = wait_for_job(server, job_id, "completed")
        run = only_run(fake, job_id)
        statuses = [r["status"] for r in fake.requests(*CREATE)]
        assert statuses[0] == status, statuses
        if created:
            # Found by reference and attached: never sent again.
            assert statuses == [status], statuses
            assert job["dispatch_attempts"] == 1, job
            assert "found the run after an interrupted start" in event_causes(job), job["events"]
            assert job["provider_job_id"] == run["id"], job
            assert assert_forward_only(job)[-1] == "completed"
        else:
            check_requeued_once(fake, job)
    assert fake.count_runs() == 3


# --- slow and lost replies ----------------------------------------------------------------------


def test_slow_replies_are_ridden_out(servers: ServerFactory, fake: FakeReplicateRemote, body: dict[str, Any]) -> None:
    server = replicate_server(servers, fake, webhooks=False)
    fake.slow_next(1.5, 1, method="POST", path="/v1/files")
    fake.slow_next(1.5, 1, method="POST", path="/v1/predictions")
    fake.slow_next(1.5, 1, method="GET", path="/v1/predictions/*")

    job_id = submit(server, body)
    job = wait_for_job(server, job_id, "completed")
    only_run(fake, job_id)
    assert fake.faults()["request_faults"] == [], "a delay was not applied"
    assert job["dispatch_attempts"] == 1, job
    assert len(fake.requests(*CREATE)) == 1
    # A slow status read may miss the run's short "processing" phase: skipping "running" is legal.
    assert assert_forward_only(job)[-1] == "completed"


@pytest.mark.parametrize("kind", ["drop_reply", "timeout_reply"])
def test_lost_create_reply_finds_the_run_instead_of_making_another(
    kind: str, servers: ServerFactory, fake: FakeReplicateRemote, body: dict[str, Any]
) -> None:
    """The run is created but the reply never comes: the connection is cut at once, or held for
    2 s and then cut. Webhooks are on, so the run may also be attached by its first webhook."""
    server = replicate_server(servers, fake, webhooks=True, reconcile_seconds=1.0)
    if kind == "drop_reply":
        fake.drop_reply_next(1)
    else:
        fake.timeout_reply_next(1, hold_seconds=2.0)

    job_id = submit(server, body)
    job = wait_for_job(server, job_id, "completed")
    run = only_run(fake, job_id)
    (create,) = fake.requests(*CREATE)
    assert create["fault_kind"] == kind, create
    assert job["dispatch_attempts"] == 1, job
    assert job["provider_job_id"] == run["id"], job
    assert assert_forward_only(job)[-1] == "completed"
    wait_for_logs(server, job_id, fake.run(run["id"])["logs"])


# --- refusals and failures ----------------------------------------------------------------------


def test_insufficient_credit_fails_the_job_without_a_run(
    servers: ServerFactory, fake: FakeReplicateRemote, body: dict[str, Any]
) -> None:
    server = replicate_server(servers, fake, webhooks=False)
    fake.insufficient_credit(1)

    job_id = submit(server, body)
    job = wait_for_job(server, job_id, "failed")
    assert fake.count_runs() == 0, fake.runs()
    assert [r["status"] for r in fake.requests(*CREATE)] == [402]
    assert "insufficient credit" in job["error"].lower(), job
    assert "replicate.com/account/billing" in job["error"], job
    assert job["provider_job_id"] is None and job["dispatch_attempts"] == 1, job
    # The create call is made while the job is "uploading" (run_job uploads, then creates).
    assert assert_forward_only(job) == ["queued", "uploading", "failed"]


def test_failing_run_fails_the_job_with_replicates_error(
    servers: ServerFactory, fake: FakeReplicateRemote, body: dict[str, Any]
) -> None:
    server = replicate_server(servers, fake, webhooks=False)
    error = "CUDA out of memory. Tried to allocate 20.00 GiB (GPU 0; 44.53 GiB total capacity)"
    fake.script_next(outcome="fail", error=error)

    job_id = submit(server, body)
    job = wait_for_job(server, job_id, "failed")
    run = only_run(fake, job_id)
    detail = fake.run(run["id"])
    assert detail["status"] == "failed", detail
    assert error in job["error"], job
    logs = wait_for_logs(server, job_id, detail["logs"])
    assert f"RuntimeError: {error}" in logs, logs
    assert job["cost_usd"] == pytest.approx(detail["api"]["metrics"]["predict_time"] * L40S_PRICE_PER_SECOND, abs=2e-6)
    assert assert_forward_only(job)[-1] == "failed"


def test_cancel_stops_the_run_and_a_late_webhook_does_not_move_the_job(
    servers: ServerFactory, fake: FakeReplicateRemote, body: dict[str, Any]
) -> None:
    server = replicate_server(servers, fake, webhooks=True, reconcile_seconds=1.0)
    fake.script_next(outcome="hang")

    job_id = submit(server, body)
    wait_for_job(server, job_id, "running")
    run = only_run(fake, job_id)
    with server.http() as http:
        reply = http.post(f"/api/cloud/jobs/{job_id}/cancel")
    assert reply.status_code == 200, reply.text
    assert reply.json()["status"] == "cancelled", reply.json()
    assert fake.run(run["id"])["status"] == "canceled"
    assert len(fake.requests("POST", f"/v1/predictions/{run['id']}/cancel")) == 1

    # Replicate's own "completed" webhook for the canceled run arrives and changes nothing.
    fake.wait_for_webhooks(1, run["id"], outcome="delivered", event="completed")
    # A late, genuinely signed delivery saying the run succeeded does not revive the job.
    late = {**fake.run(run["id"])["api"], "status": "succeeded", "output": "Training complete", "error": None}
    payload = json.dumps(late).encode()
    reply = post_webhook(server, job_id, payload, signed_headers(fake.webhook_secret, "msg_late_success", payload))
    assert reply.status_code == 200, reply.text

    job = server.job(job_id)
    assert job["status"] == "cancelled", job
    assert assert_forward_only(job) == ["queued", "uploading", "starting", "running", "cancelled"]
    assert only_run(fake, job_id)["status"] == "canceled"


# --- webhook faults -----------------------------------------------------------------------------


def test_dropped_webhooks_fall_back_to_polling(
    servers: ServerFactory, fake: FakeReplicateRemote, body: dict[str, Any]
) -> None:
    server = replicate_server(servers, fake, webhooks=True, reconcile_seconds=1.0)
    fake.drop_webhooks(None)  # every delivery, until removed

    job_id = submit(server, body)
    job = wait_for_job(server, job_id, "completed")
    run = only_run(fake, job_id)
    deliveries = fake.webhooks(run["id"])
    assert deliveries and {d["outcome"] for d in deliveries} == {"dropped"}, deliveries
    assert not any(cause.startswith("webhook") for cause in event_causes(job)), job["events"]
    assert assert_forward_only(job)[-1] == "completed"
    wait_for_logs(server, job_id, fake.run(run["id"])["logs"])


def test_duplicated_webhooks_are_applied_once(
    servers: ServerFactory, fake: FakeReplicateRemote, body: dict[str, Any]
) -> None:
    server = replicate_server(servers, fake, webhooks=True, reconcile_seconds=600)
    fake.duplicate_webhooks(None)

    job_id = submit(server, body)
    job = wait_for_job(server, job_id, "completed")
    run = only_run(fake, job_id)
    detail = fake.run(run["id"])
    fake.wait_until(
        lambda: sum(d["duplicate"] for d in fake.webhooks(run["id"], event="completed")) >= 1,
        what="the duplicate of the completed webhook",
    )
    deliveries = fake.webhooks(run["id"])
    duplicates = [d for d in deliveries if d["duplicate"]]
    assert duplicates and all(d["outcome"] == "delivered" for d in deliveries), deliveries
    for copy in duplicates:
        assert json.loads(copy["response_body"])["duplicate"] is True, copy
    assert wait_for_logs(server, job_id, detail["logs"]) == detail["logs"]
    job = server.job(job_id)
    assert assert_forward_only(job) == ["queued", "uploading", "starting", "running", "completed"]
    assert job["cost_usd"] == pytest.approx(detail["api"]["metrics"]["predict_time"] * L40S_PRICE_PER_SECOND, abs=2e-6)


def test_out_of_order_webhooks_never_move_the_job_back(
    servers: ServerFactory, fake: FakeReplicateRemote, body: dict[str, Any]
) -> None:
    """Every delivery of the run is held until it has ended, then all are sent newest first."""
    server = replicate_server(servers, fake, webhooks=True, reconcile_seconds=600)
    fake.reorder_webhooks(100, hold_seconds=60)

    job_id = submit(server, body)
    wait_for_job(server, job_id, "starting")
    run = only_run(fake, job_id)
    detail = fake.wait_for_run(run["id"], "succeeded", timeout=20)
    assert fake.webhooks(run["id"]) == [], "a delivery went out before the held ones were released"
    held = fake.flush_webhooks()  # the run has ended: every message it will send is held now
    assert held >= 2, held
    wait_for_job(server, job_id, "completed")
    deliveries = fake.wait_for_webhooks(held, run["id"], outcome="delivered")
    assert len(deliveries) == held and all(d["reordered"] for d in deliveries), deliveries
    assert deliveries[0]["run_status"] == "succeeded" and deliveries[-1]["run_status"] == "processing", deliveries

    job = server.job(job_id)
    # First seen finished (the newest delivery came first): the running step is at Replicate's started_at.
    assert assert_forward_only(job) == ["queued", "uploading", "starting", "running", "completed"], job["events"]
    assert job["events"][3]["cause"] == "provider reported the run's start", job["events"]
    assert job["started_at"] is not None and job["duration_seconds"] is not None, job
    assert job_logs(server, job_id) == detail["logs"]
    assert (job["progress"]["step"], job["progress"]["total_steps"]) == (1000, 1000), job
    # Late "processing" deliveries must not replace the final cost with a running estimate.
    assert job["cost_usd"] == pytest.approx(detail["api"]["metrics"]["predict_time"] * L40S_PRICE_PER_SECOND, abs=2e-6)
