"""Pure parts of the worker: requirements matching, staging paths, archive safety, claim spreading,
and a dataset download that stops part way (over a mock transport)."""

from __future__ import annotations

import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from cloudtuner.agent.protocol import DatasetDownloadError, WorkerClient
from cloudtuner.agent.staging import move_root, rewrite_dataloader, unpack, write_trainer_files
from cloudtuner.schemas.workers import GpuInfo, WorkerRequirements, worker_command
from cloudtuner.services.workers_protocol import _spread, providers_for

A100 = GpuInfo(name="A100", memory_mb=81920)
T4 = GpuInfo(name="T4", memory_mb=16384)


def test_requirements_are_read_from_the_config_with_or_without_dashes() -> None:
    needs = WorkerRequirements.from_config({"--worker_labels": "gpu=a100*, zone=eu", "worker_gpus": "2"})
    assert needs.labels == {"gpu": "a100*", "zone": "eu"} and needs.gpus == 2
    assert WorkerRequirements.from_config({"worker_min_vram_gb": 40}).min_vram_mb == 40 * 1024
    assert WorkerRequirements.from_config({"worker_gpus": "lots", "worker_labels": 3}) == WorkerRequirements()


def test_requirements_match_labels_by_glob_and_gpus_by_count_and_memory() -> None:
    needs = WorkerRequirements(labels={"gpu": "a100*"}, gpus=2, min_vram_mb=40_000)
    assert needs.matches({"gpu": "a100-80g"}, [A100, A100])
    assert not needs.matches({"gpu": "a100-80g"}, [A100])
    assert not needs.matches({"gpu": "t4"}, [A100, A100])
    assert not needs.matches({}, [A100, A100])
    assert not needs.matches({"gpu": "a100"}, [A100, T4])
    assert WorkerRequirements().matches({}, [])


def test_dataset_paths_move_to_the_staging_folder(tmp_path: Path) -> None:
    assert move_root("/datasets/images", "/datasets", "/w/job/datasets") == "/w/job/datasets/images"
    assert move_root("/datasets", "/datasets/", "/w") == "/w"
    assert move_root("/datasetsX/a", "/datasets", "/w") == "/datasetsX/a"
    assert move_root(1024, "/datasets", "/w") == 1024
    moved = rewrite_dataloader([{"id": "a", "instance_data_dir": "/datasets/a", "resolution": 1024}], "/datasets", "/s")
    assert moved == [{"id": "a", "instance_data_dir": "/s/a", "resolution": 1024}]
    config, backend, output = write_trainer_files(tmp_path, {"--model_family": "flux"}, moved)
    assert config.name == "config.json" and backend.name == "multidatabackend.json" and output.is_dir()
    assert f'"--output_dir": "{output}"' in config.read_text()


def test_archives_cannot_write_outside_the_staging_folder(tmp_path: Path) -> None:
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("../escape.txt", "no")
    with pytest.raises(ValueError, match="escapes"):
        unpack(archive, tmp_path / "out")
    assert not (tmp_path / "escape.txt").exists()


def test_claims_spread_over_the_oldest_jobs_of_the_top_priority_only() -> None:
    candidates = [("a", 5), ("b", 5), ("c", 5), ("d", 1)]
    seen = {tuple(_spread(candidates)) for _ in range(200)}
    assert all(order[-1] == "d" and sorted(order[:3]) == ["a", "b", "c"] for order in seen)
    assert len(seen) == 3
    assert _spread([]) == []


def test_worker_command_and_provider_labels() -> None:
    assert worker_command("http://h:8001", "ctw_x", {"gpu": "a100"}) == (
        "cloudtuner worker --orchestrator-url http://h:8001 --worker-token ctw_x --label gpu=a100"
    )
    assert providers_for({}) == ("worker",)
    assert providers_for({"cloudtuner.provider": "local"}) == ("local",)


class _CutShort(httpx.AsyncByteStream):
    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b"PK\x03\x04 the first part"
        raise httpx.RemoteProtocolError("peer closed connection without sending complete message body")


async def test_a_dataset_download_that_stops_part_way_says_so(tmp_path: Path) -> None:
    def reply(request: httpx.Request) -> httpx.Response:
        assert request.url.params["lease_token"] == "lease-1"
        return httpx.Response(200, headers={"X-Cloudtuner-Dataloader": "W10="}, stream=_CutShort())

    client = WorkerClient("http://127.0.0.1:9", "token")
    await client.aclose()
    client._http = httpx.AsyncClient(base_url=client.base_url, transport=httpx.MockTransport(reply))
    try:
        with pytest.raises(DatasetDownloadError, match=r"stopped before its end .*peer closed connection"):
            await client.fetch_datasets("job-1", "lease-1", tmp_path / "datasets.zip")
    finally:
        await client.aclose()
