"""Runs against the fake: create, upload once, status to the end, logs, cost, cancel, list."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from cloudtuner.core.errors import ProviderRejectedError
from cloudtuner.providers.base import CloudJobInfo, CloudJobStatus
from cloudtuner.providers.replicate import HardwareOverride, ReplicateOptions, ReplicateProvider
from cloudtuner.settings import Settings
from tests.fakes.replicate import TRAINER_OLD_VERSION, TRAINER_VERSION, FakeReplicate, stable_version_id
from tests.support.waiting import wait_until

from .conftest import OPTIONS, ProviderFactory, make_archive, run_request


async def finished(provider: ReplicateProvider, prediction_id: str) -> CloudJobInfo:
    return await wait_until(
        lambda: provider.get_job_status(prediction_id),
        lambda info: info.status.as_job_status().is_terminal,
        timeout=10,
    )


async def test_run_without_archive_sends_only_trainer_inputs(provider: ReplicateProvider, fake: FakeReplicate) -> None:
    request = run_request()
    info = await provider.run_job(request)
    assert info.status is CloudJobStatus.STARTING
    assert info.reference == request.job_id
    assert info.hardware == "gpu-l40s"
    (create,) = fake.requests(method="POST", path="/v1/predictions")
    body = create["json"]
    assert set(body) == {"version", "input"}
    assert body["version"] == f"simpletuner/advanced-trainer:{TRAINER_VERSION}"
    assert set(body["input"]) == {"config_json", "dataloader_json"}
    config = json.loads(body["input"]["config_json"])
    assert config == {**request.config, "--tracker_run_name": f"cloudtuner-{request.job_id}"}
    assert json.loads(body["input"]["dataloader_json"]) == request.dataloader_config
    assert fake.requests(path="/v1/files*") == []
    assert fake.count_runs() == 1


async def test_versions_are_cached_and_pins_and_hardware_are_honoured(
    make_provider: ProviderFactory, fake: FakeReplicate
) -> None:
    provider = make_provider(hardware_overrides={"gpu-l40s": HardwareOverride(version=TRAINER_OLD_VERSION)})
    await provider.run_job(run_request())
    await provider.run_job(run_request(hardware="gpu-h100"))
    await provider.run_job(run_request(hardware="gpu-h100"))
    versions = [r["json"]["version"] for r in fake.requests(method="POST", path="/v1/predictions")]
    h100 = stable_version_id("simpletuner/advanced-trainer-h100:1")
    assert versions == [
        f"simpletuner/advanced-trainer:{TRAINER_OLD_VERSION}",
        f"simpletuner/advanced-trainer-h100:{h100}",
        f"simpletuner/advanced-trainer-h100:{h100}",
    ]
    assert len(fake.requests(method="GET", path="/v1/models/simpletuner/advanced-trainer-h100/versions")) == 1
    assert fake.requests(method="GET", path="/v1/models/simpletuner/advanced-trainer/versions") == []


async def test_trainer_models_and_pins_from_the_environment(
    fake: FakeReplicate, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CLOUDTUNER_REPLICATE_HARDWARE: a pinned version for the default GPU, a model for an A100 profile."""
    monkeypatch.setenv(
        "CLOUDTUNER_REPLICATE_HARDWARE",
        json.dumps(
            {
                "gpu-l40s": {"version": TRAINER_OLD_VERSION},
                "GPU-A100-Large": {"model": "simpletuner/advanced-trainer-l40s", "price_per_second": 0.002},
            }
        ),
    )
    settings = Settings(data_dir=tmp_path / "data", replicate_api_url=fake.base_url)

    async def token() -> str:
        return fake.token

    provider = ReplicateProvider(settings, token, options=OPTIONS)
    try:
        await provider.run_job(run_request())
        info = await provider.run_job(run_request(hardware="gpu-a100-large"))
        profile = provider.catalog.get("gpu-a100-large")
        assert (profile.trainer_model, profile.price_per_second) == ("simpletuner/advanced-trainer-l40s", 0.002)
    finally:
        await provider.aclose()
    versions = [r["json"]["version"] for r in fake.requests(method="POST", path="/v1/predictions")]
    l40s = stable_version_id("simpletuner/advanced-trainer-l40s:1")
    assert versions == [
        f"simpletuner/advanced-trainer:{TRAINER_OLD_VERSION}",
        f"simpletuner/advanced-trainer-l40s:{l40s}",
    ]
    assert info.hardware == "gpu-a100-large"


async def test_unknown_or_unavailable_hardware_is_refused(provider: ReplicateProvider, fake: FakeReplicate) -> None:
    with pytest.raises(ProviderRejectedError, match="gpu-l40s"):
        await provider.run_job(run_request(hardware="gpu-tpu"))
    with pytest.raises(ProviderRejectedError, match="No SimpleTuner trainer model"):
        await provider.run_job(run_request(hardware="gpu-a100-large"))
    assert fake.count_runs() == 0


async def test_webhook_url_and_event_filter(provider: ReplicateProvider, fake: FakeReplicate) -> None:
    request = run_request()
    hook = f"http://127.0.0.1:9/api/webhooks/replicate?job_id={request.job_id}"
    await provider.run_job(run_request(job_id=request.job_id, webhook_url=hook))
    (create,) = fake.requests(method="POST", path="/v1/predictions")
    assert create["json"]["webhook"] == hook
    assert create["json"]["webhook_events_filter"] == ["start", "output", "logs", "completed"]
    (run,) = fake.runs(webhook=hook)
    assert run["webhook_events_filter"] == ["start", "output", "logs", "completed"]


async def test_archive_is_uploaded_once_per_content(
    provider: ReplicateProvider, fake: FakeReplicate, tmp_path: Path
) -> None:
    archive = make_archive(tmp_path, size=2_500_000)
    reports: list[tuple[str, int, int]] = []

    async def report(stage: str, done: int, total: int) -> None:
        reports.append((stage, done, total))

    first = await provider.run_job(run_request(dataset_archive=archive, report_progress=report))
    (upload,) = fake.requests(method="POST", path="/v1/files")
    assert upload["content_type"].startswith("multipart/form-data")
    assert reports[0] == ("uploading", 0, archive.size_bytes)
    assert reports[-1] == ("uploading", archive.size_bytes, archive.size_bytes)
    assert len(reports) >= 4  # streamed in blocks, reported as it went
    run = fake.run(first.provider_job_id)
    images = run["input"]["images"]
    assert images.startswith(fake.base_url + "/files/")
    stored = fake.state.get_file(images.rsplit("/", 1)[1])
    assert stored is not None and stored.data == archive.path.read_bytes()
    assert stored.name.endswith(".zip") and stored.content_type == "application/zip"

    reports.clear()
    second = await provider.run_job(run_request(dataset_archive=archive, report_progress=report))
    assert len(fake.requests(method="POST", path="/v1/files")) == 1  # 0 bytes sent the second time
    assert fake.run(second.provider_job_id)["input"]["images"] == images
    assert reports == [("uploading", archive.size_bytes, archive.size_bytes)]
    assert (await finished(provider, second.provider_job_id)).status is CloudJobStatus.COMPLETED

    changed = make_archive(tmp_path, size=100_000, name="other.zip")
    third = await provider.run_job(run_request(dataset_archive=changed))
    assert len(fake.requests(method="POST", path="/v1/files")) == 2
    assert fake.run(third.provider_job_id)["input"]["images"] != images


async def test_expiring_file_is_not_reused(provider: ReplicateProvider, fake: FakeReplicate, tmp_path: Path) -> None:
    fake.configure(file_retention_seconds=60.0)  # expires within the 15 minute reuse margin
    archive = make_archive(tmp_path)
    await provider.run_job(run_request(dataset_archive=archive))
    await provider.run_job(run_request(dataset_archive=archive))
    assert len(fake.requests(method="POST", path="/v1/files")) == 2


async def test_file_refused_as_too_large(provider: ReplicateProvider, fake: FakeReplicate, tmp_path: Path) -> None:
    fake.configure(file_size_limit=10_000)
    with pytest.raises(ProviderRejectedError) as caught:
        await provider.run_job(run_request(dataset_archive=make_archive(tmp_path)))
    assert "too large" in caught.value.message and "100 MiB" in caught.value.message
    assert fake.count_runs() == 0


async def test_archive_over_the_limit_is_refused_before_sending(
    make_provider: ProviderFactory, fake: FakeReplicate, tmp_path: Path
) -> None:
    provider = make_provider(options=ReplicateOptions(max_upload_bytes=50_000, retry=OPTIONS.retry))
    archive = make_archive(tmp_path, size=60_000)
    with pytest.raises(ProviderRejectedError) as caught:
        await provider.run_job(run_request(dataset_archive=archive))
    assert f"{archive.size_bytes - 50_000:,} bytes over" in caught.value.message
    assert fake.requests(path="/v1/files*") == []
    assert fake.count_runs() == 0


async def test_status_logs_progress_and_cost_to_success(provider: ReplicateProvider, fake: FakeReplicate) -> None:
    info = await provider.run_job(run_request())
    running = await wait_until(
        lambda: provider.get_job_status(info.provider_job_id),
        lambda i: i.status is CloudJobStatus.RUNNING and i.progress is not None and i.progress.step is not None,
        timeout=10,
    )
    assert running.progress is not None and running.progress.total_steps == 20
    assert running.cost_usd is not None and running.cost_usd >= 0
    done = await finished(provider, info.provider_job_id)
    assert done.status is CloudJobStatus.COMPLETED
    assert done.progress is not None
    assert (done.progress.stage, done.progress.step, done.progress.total_steps) == ("complete", 20, 20)
    assert done.progress.loss is not None and done.progress.learning_rate == 0.0001
    predict_time = fake.run(info.provider_job_id)["api"]["metrics"]["predict_time"]
    assert done.cost_usd == pytest.approx(predict_time * 0.000975)
    assert done.output == {"output": "Training complete. Output: /src/output"}
    assert done.started_at is not None and done.finished_at is not None and done.error is None
    logs = await provider.get_job_logs(info.provider_job_id)
    assert "Caching VAE latents" in logs and logs.rstrip().endswith("Training complete. Output: /src/output")


async def test_failed_run(provider: ReplicateProvider, fake: FakeReplicate) -> None:
    fake.script_next(outcome="fail", error="CUDA out of memory on the fake", processing_seconds=0.2)
    info = await provider.run_job(run_request())
    done = await finished(provider, info.provider_job_id)
    assert done.status is CloudJobStatus.FAILED
    assert done.error == "CUDA out of memory on the fake"
    assert "RuntimeError: CUDA out of memory" in await provider.get_job_logs(info.provider_job_id)


async def test_cancel(provider: ReplicateProvider, fake: FakeReplicate) -> None:
    fake.script_next(outcome="hang")
    info = await provider.run_job(run_request())
    fake.wait_for_run(info.provider_job_id, "processing")
    assert await provider.cancel_job(info.provider_job_id) is True
    assert (await provider.get_job_status(info.provider_job_id)).status is CloudJobStatus.CANCELLED
    assert await provider.cancel_job(info.provider_job_id) is True
    assert await provider.cancel_job("doesnotexist0000000000000a") is False


async def test_unknown_prediction(provider: ReplicateProvider) -> None:
    info = await provider.get_job_status("doesnotexist0000000000000a")
    assert info.status is CloudJobStatus.FAILED and info.error and "no prediction" in info.error
    assert await provider.get_job_logs("doesnotexist0000000000000a") == ""


async def test_list_jobs_only_trainer_runs_newest_first(provider: ReplicateProvider, fake: FakeReplicate) -> None:
    fake.configure(page_size_runs=2)
    fake.add_model("someone", "image-model", versions=1)
    version = fake.state.get_model("someone", "image-model").versions[0].id  # type: ignore[union-attr]
    headers = {"Authorization": f"Bearer {fake.token}"}
    ours = [await provider.run_job(run_request()) for _ in range(2)]
    async with httpx.AsyncClient(base_url=fake.base_url + "/", headers=headers, trust_env=False) as client:
        other = await client.post(
            "predictions", json={"version": f"someone/image-model:{version}", "input": {"prompt": "x"}}
        )
        foreign = await client.post(
            "predictions",
            json={
                "version": f"simpletuner/advanced-trainer:{TRAINER_VERSION}",
                "input": {"config_json": '{"--tracker_run_name": "by-hand"}', "dataloader_json": "[]"},
            },
        )
    assert other.status_code == foreign.status_code == 201
    more = await provider.run_job(run_request())

    listed = await provider.list_jobs(limit=10)
    assert [i.provider_job_id for i in listed] == [
        more.provider_job_id,
        foreign.json()["id"],
        ours[1].provider_job_id,
        ours[0].provider_job_id,
    ]
    assert [i.reference for i in listed] == [more.reference, None, ours[1].reference, ours[0].reference]
    assert listed[1].metadata["tracker_run_name"] == "by-hand"
    assert all(i.hardware == "gpu-l40s" for i in listed)
    assert [i.provider_job_id for i in await provider.list_jobs(limit=3)] == [i.provider_job_id for i in listed[:3]]
    assert await provider.list_jobs(limit=0) == []


async def test_list_jobs_references_survive_a_restart(make_provider: ProviderFactory) -> None:
    first = make_provider()
    made = await first.run_job(run_request())
    restarted = make_provider()
    (listed,) = await restarted.list_jobs()
    assert listed.reference == made.reference
