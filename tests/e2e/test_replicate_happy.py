"""The seeds' inline-config submission on Replicate, end to end against the fake Replicate process.

A real ``cloudtuner server`` process is pointed at the fake; the job goes ``queued → uploading →
starting → running → completed`` driven by polling alone, or by webhooks alone (the polling
interval is then far longer than the test). The dataset is local and full of traps: a ``.env``, a
symlink to a file outside the dataset and a zip-slip name, none of which may reach Replicate.
"""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import ServerFactory, ServerProcess
from tests.e2e.replicate_support import (
    ENV_NAME,
    L40S_PRICE_PER_SECOND,
    SLIP_NAME,
    SYMLINK_NAME,
    Dataset,
    assert_forward_only,
    download_archive,
    fake_process,
    fresh_fake,
    make_dataset,
    only_run,
    replicate_server,
    seed_body,
    submit,
    trainer_input_keys,
    wait_for_job,
    wait_for_logs,
)
from tests.fakes.replicate import FakeProcess, FakeReplicateRemote

_PROGRESS = re.compile(r"\| (\d+)/(\d+) \[.*step_loss=([0-9.]+)\]")


@pytest.fixture(scope="module")
def fake_proc() -> Iterator[FakeProcess]:
    yield from fake_process()


@pytest.fixture
def fake(fake_proc: FakeProcess) -> Iterator[FakeReplicateRemote]:
    yield from fresh_fake(fake_proc)


def check_completed_job(server: ServerProcess, fake: FakeReplicateRemote, job_id: str, dataset: Dataset) -> None:
    """Everything a completed seed job must show, compared with what the fake did."""
    run = only_run(fake, job_id)
    detail = fake.run(run["id"])
    assert detail["status"] == "succeeded", detail
    job = server.job(job_id)

    assert job["provider_job_id"] == run["id"], job
    assert job["hardware"] == "gpu-l40s", job
    assert job["error"] is None, job
    assert job["dispatch_attempts"] == 1, job

    # The trainer's log, whole and only once.
    logs = wait_for_logs(server, job_id, detail["logs"])
    assert "Starting SimpleTuner training (model family: flux)" in logs, logs
    assert "Training complete. Output: /src/output" in logs, logs

    # Progress: the last step line of the trainer's log.
    step, total, loss = _PROGRESS.findall(logs)[-1]
    progress = server.job(job_id)["progress"]
    assert (progress["step"], progress["total_steps"]) == (int(step), int(total)) == (1000, 1000), progress
    assert progress["loss"] == pytest.approx(float(loss), abs=1e-4), progress

    # Cost: Replicate's predict_time at the L40S price.
    predict_time = detail["api"]["metrics"]["predict_time"]
    job = server.job(job_id)
    assert job["cost_usd"] > 0, job
    assert job["cost_usd"] == pytest.approx(predict_time * L40S_PRICE_PER_SECOND, abs=2e-6), (job, predict_time)

    # The timeline.
    assert assert_forward_only(job) == ["queued", "uploading", "starting", "running", "completed"], job["events"]

    # The upload summary: the images and captions, with the traps excluded and said why.
    summary = job["upload_summary"]
    assert summary is not None, job
    (dataset_summary,) = summary["datasets"]
    assert dataset_summary["dataset_id"] == "training-images", summary
    assert dataset_summary["file_count"] == len(dataset.uploaded), summary
    assert dataset_summary["image_count"] == len(dataset.images), summary
    assert dataset_summary["captions_found"] == len(dataset.captions), summary
    assert dataset_summary["total_bytes"] == sum(map(len, dataset.uploaded.values())), summary
    excluded = {item["path"]: item["reason"] for item in dataset_summary["excluded"]}
    assert excluded == {
        ENV_NAME: "environment_file",
        SYMLINK_NAME: "symlink_outside_dataset",
        SLIP_NAME: "unsafe_name",
    }, summary
    assert summary["upload_limit_bytes"] == 100 * 1024 * 1024 and summary["fits_upload_limit"] is True, summary

    # The prediction: only inputs the trainer declares, the dataset paths rewritten to the archive.
    run_input = detail["input"]
    declared = trainer_input_keys(fake, detail["model"], detail["version"])
    assert set(run_input) <= declared, sorted(set(run_input) - declared)
    assert detail["model"] == "simpletuner/advanced-trainer", detail
    assert json.loads(run_input["config_json"])["--max_train_steps"] == 1000, run_input
    (loader,) = json.loads(run_input["dataloader_json"])
    archive_dir = loader["instance_data_dir"]
    assert archive_dir.startswith("/src/datasets/"), loader
    assert str(dataset.folder) not in run_input["dataloader_json"], loader

    # The archive Replicate received: exactly the images and captions, nothing else.
    archive = download_archive(fake, run_input["images"])
    check_archive(archive, dataset, archive_dir.removeprefix("/src/datasets/").strip("/"))


def check_archive(archive: zipfile.ZipFile, dataset: Dataset, folder: str) -> None:
    """The archive holds the dataset's images and captions under ``folder`` and nothing else."""
    files = {info.filename: info for info in archive.infolist() if not info.is_dir()}
    for name in files:
        assert not name.startswith("/") and ".." not in name.split("/") and "\\" not in name, sorted(files)
    expected = {f"{folder}/{name}" for name in dataset.uploaded}
    assert set(files) == expected, sorted(files)
    for name, content in dataset.uploaded.items():
        assert archive.read(f"{folder}/{name}") == content, name
    for name in dataset.images:
        assert files[f"{folder}/{name}"].compress_type == zipfile.ZIP_STORED, name
    for info in files.values():
        data = archive.read(info)
        assert dataset.outside_content not in data, info.filename
        assert dataset.env_content not in data, info.filename


def test_seed_job_completes_by_polling_and_an_unchanged_dataset_is_not_uploaded_again(
    tmp_path: Path, servers: ServerFactory, fake: FakeReplicateRemote
) -> None:
    dataset = make_dataset(tmp_path)
    server = replicate_server(servers, fake, webhooks=False, reconcile_seconds=0.3)

    first = submit(server, seed_body(dataset.folder))
    wait_for_job(server, first, "completed")
    check_completed_job(server, fake, first, dataset)
    first_run = only_run(fake, first)
    assert first_run["webhook"] is None, first_run  # no public URL: the server polls
    assert fake.webhooks() == [], fake.webhooks()

    # (c) The same dataset again: the file Replicate holds is reused, 0 bytes are uploaded.
    second = submit(server, seed_body(dataset.folder))
    wait_for_job(server, second, "completed")
    check_completed_job(server, fake, second, dataset)
    second_run = only_run(fake, second)
    uploads = fake.requests("POST", "/v1/files")
    assert len(uploads) == 1, uploads
    assert second_run["input"]["images"] == first_run["input"]["images"], (first_run, second_run)
    assert server.job(second)["upload_summary"]["fingerprint"] == server.job(first)["upload_summary"]["fingerprint"]


def test_seed_job_completes_by_webhooks_alone(
    database_url: str | None, tmp_path: Path, servers: ServerFactory, fake: FakeReplicateRemote
) -> None:
    del database_url  # the servers fixture uses it
    dataset = make_dataset(tmp_path)
    # Polling every 600 s: within the test only webhooks can move the job.
    server = replicate_server(servers, fake, webhooks=True, reconcile_seconds=600)

    job_id = submit(server, seed_body(dataset.folder))
    wait_for_job(server, job_id, "completed")
    check_completed_job(server, fake, job_id, dataset)

    run = only_run(fake, job_id)
    assert run["webhook"] == f"{server.url}/api/webhooks/replicate?job_id={job_id}", run
    assert sorted(run["webhook_events_filter"]) == ["completed", "logs", "output", "start"], run
    deliveries = fake.webhooks(run["id"])
    assert deliveries and all(d["outcome"] == "delivered" for d in deliveries), deliveries
    assert any("completed" in d["events"] for d in deliveries), deliveries
    # Only webhooks moved it: after the create call the server never read the run.
    reads = fake.requests("GET", f"/v1/predictions/{run['id']}")
    assert reads == [], reads
    events: list[dict[str, Any]] = server.job(job_id)["events"]
    assert [e["cause"].startswith("webhook") for e in events[3:]] == [True, True], events
