"""A job run on the fake Replicate delivers its model to each of the three destinations, and each
delivery shows in the job's artifacts: back to this server (the built-in S3 endpoint, with the job's
own key, also in the seeds' "download only" mode), to an external S3 server (moto on loopback), and to
the Hugging Face Hub (a fake Hub, written to by the real ``huggingface_hub`` client).

The fake trainer uploads ``pytorch_lora_weights.safetensors``, a sample and a checkpoint
(``tests/fakes/replicate/delivery.py``); the tests compare sizes and SHA-256 with what it uploaded.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.delivery_support import (
    MOTO_KEY,
    artifacts,
    by_path,
    delivery_server,
    fake_hub,
    moto_client,
    moto_server,
    wait_for_delivery,
)
from tests.e2e.harness import ServerFactory, ServerProcess, run_cli
from tests.e2e.replicate_support import (
    fake_process,
    fresh_fake,
    make_dataset,
    runs_for_job,
    seed_body,
    submit,
    wait_for_job,
)
from tests.fakes.hf_hub import DEFAULT_TOKEN as HUB_TOKEN
from tests.fakes.replicate import FakeProcess, FakeReplicateRemote

WEIGHTS = "pytorch_lora_weights.safetensors"
CHECKPOINT_BYTES = 6 * 1024 * 1024  # over 5 MiB: the checkpoint goes up as a multipart upload


@pytest.fixture(scope="module")
def fake_proc() -> Iterator[FakeProcess]:
    yield from fake_process()


@pytest.fixture
def fake(fake_proc: FakeProcess) -> Iterator[FakeReplicateRemote]:
    yield from fresh_fake(fake_proc, delivery_checkpoint_bytes=CHECKPOINT_BYTES)


def delivered_run(fake: FakeReplicateRemote, job_id: str) -> dict[str, Any]:
    (run,) = runs_for_job(fake, job_id)
    detail = fake.run(run["id"])
    assert detail["delivery"] == "delivered", detail
    return detail


def check_artifacts(reply: dict[str, Any], run: dict[str, Any], destination: str) -> dict[str, dict[str, Any]]:
    """Every file the trainer uploaded is an artifact of ``destination``, with its SHA-256 when told."""
    found = by_path(reply)
    for path, sha256 in run["delivered"].items():
        assert path in found, (path, sorted(found))
        item = found[path]
        assert item["destination"] == destination, item
        if item["sha256"] is not None:
            assert item["sha256"] == sha256, (path, item)
    assert found[WEIGHTS]["kind"] == "weights", found[WEIGHTS]
    assert found[WEIGHTS]["sha256"] == run["delivered"][WEIGHTS], found[WEIGHTS]
    assert any(item["kind"] == "checkpoint" for item in found.values()), found
    assert any(item["kind"] == "sample" for item in found.values()), found
    assert reply["total_bytes"] == sum(item["size_bytes"] for item in reply["artifacts"]), reply
    return found


def test_local_delivery_with_the_jobs_own_key_and_download_only_mode(
    database_url: str | None, tmp_path: Path, servers: ServerFactory, fake: FakeReplicateRemote
) -> None:
    del database_url  # the servers fixture uses it
    dataset = make_dataset(tmp_path)
    server = delivery_server(servers, fake)

    # Asked for explicitly ...
    job_id = submit(server, seed_body(dataset.folder, publishing={"destination": "local"}))
    wait_for_job(server, job_id, "completed", timeout=60)
    run = delivered_run(fake, job_id)
    run_input = run["input"]
    assert run_input["s3_endpoint_url"] == f"{server.url}/api/cloud/storage", run_input
    assert (run_input["s3_bucket"], run_input["s3_base_path"]) == ("cloudtuner", f"jobs/{job_id}"), run_input
    assert run_input["s3_access_key"].startswith("CTJ"), "a job key, limited to the job's folder"

    # ... the files are recorded as they arrive (the checkpoint through a multipart upload) ...
    reply = artifacts(server, job_id)
    found = check_artifacts(reply, run, "local")
    assert all(item["sha256"] for item in found.values()), found
    checkpoint = next(item for item in found.values() if item["kind"] == "checkpoint")
    assert checkpoint["size_bytes"] == CHECKPOINT_BYTES, checkpoint
    on_disk = server.data_dir / "cloud_outputs" / "cloudtuner" / "jobs" / job_id / WEIGHTS
    assert hashlib.sha256(on_disk.read_bytes()).hexdigest() == found[WEIGHTS]["sha256"]
    assert wait_for_delivery(server, job_id)["delivery"]["location"] == f"s3://cloudtuner/jobs/{job_id}/"

    # ... shown in the job's detail, and downloadable whole or by range.
    detail_paths = {item["path"] for item in server.job(job_id)["artifacts"]}
    assert detail_paths == set(found), detail_paths
    check_download(server, found[WEIGHTS], on_disk.read_bytes())

    # "Download only": no publishing at all, and the server has a public URL.
    auto_id = submit(server, seed_body(dataset.folder))
    wait_for_job(server, auto_id, "completed", timeout=60)
    auto_run = delivered_run(fake, auto_id)
    assert auto_run["input"]["s3_base_path"] == f"jobs/{auto_id}", auto_run["input"]
    check_artifacts(wait_for_delivery(server, auto_id), auto_run, "local")

    check_cli(server, job_id, found, tmp_path / "downloads")

    # Deleting a job keeps its model unless asked; asked, its folder goes too.
    with server.http() as http:
        kept = http.delete(f"/api/cloud/jobs/{auto_id}")
        assert kept.status_code == 200 and kept.json()["artifacts_kept"] == 3, kept.text
        assert (server.data_dir / "cloud_outputs" / "cloudtuner" / "jobs" / auto_id / WEIGHTS).exists()
        gone = http.delete(f"/api/cloud/jobs/{job_id}", params={"delete_artifacts": "true"})
        assert gone.status_code == 200 and gone.json()["artifacts_deleted"] == 3, gone.text
    assert not on_disk.exists()


def check_cli(server: ServerProcess, job_id: str, found: dict[str, dict[str, Any]], folder: Path) -> None:
    """`cloudtuner jobs artifacts` lists them; `jobs download` fetches, checks, skips and resumes."""
    listed = run_cli("jobs", "artifacts", job_id, "--json", url=server.url).json()
    assert {item["path"] for item in listed["artifacts"]} == set(found), listed
    table = run_cli("jobs", "artifacts", job_id, url=server.url).stdout
    assert WEIGHTS in table and "weights" in table and "Delivery: local (done)" in table, table

    first = run_cli("jobs", "download", job_id, "--to", str(folder), url=server.url)
    assert "Downloaded 3 files" in first.stdout, first.describe()
    for path, item in found.items():
        assert hashlib.sha256((folder / job_id / path).read_bytes()).hexdigest() == item["sha256"], path
    again = run_cli("jobs", "download", job_id, "--to", str(folder), url=server.url)
    assert "Downloaded 0 files" in again.stdout and "3 already there" in again.stdout, again.describe()

    # An interrupted download resumes from its .part file.
    weights = folder / job_id / WEIGHTS
    content = weights.read_bytes()
    weights.unlink()
    weights.with_name(WEIGHTS + ".part").write_bytes(content[:1000])
    run_cli("jobs", "download", job_id, "--to", str(folder), url=server.url)
    assert weights.read_bytes() == content
    assert not weights.with_name(WEIGHTS + ".part").exists()


def check_download(server: ServerProcess, item: dict[str, Any], content: bytes) -> None:
    with server.http() as http:
        whole = http.get(item["download_url"])
        assert whole.status_code == 200, whole.text
        assert whole.content == content
        assert whole.headers["x-checksum-sha256"] == item["sha256"]
        assert WEIGHTS in whole.headers["content-disposition"]
        part = http.get(item["download_url"], headers={"Range": "bytes=10-19"})
        assert part.status_code == 206 and part.content == content[10:20], part.headers
        assert part.headers["content-range"] == f"bytes 10-19/{len(content)}"
        outside = http.get(item["download_url"], headers={"Range": f"bytes={len(content) + 5}-"})
        assert outside.status_code == 416, outside.text


def test_external_s3_delivery_to_a_second_s3_server(
    tmp_path: Path, servers: ServerFactory, fake: FakeReplicateRemote
) -> None:
    dataset = make_dataset(tmp_path)
    with moto_server() as moto_url:
        moto_client(moto_url).create_bucket(Bucket="models")
        server = delivery_server(servers, fake, public_url=False)
        publishing = {
            "destination": "s3",
            "s3_endpoint_url": moto_url,
            "s3_bucket": "models",
            "s3_base_path": "flux/loras",
            "s3_access_key": MOTO_KEY[0],
            "s3_secret_key": MOTO_KEY[1],
        }
        job_id = submit(server, seed_body(dataset.folder, publishing=publishing))
        wait_for_job(server, job_id, "completed", timeout=60)
        run = delivered_run(fake, job_id)
        assert run["input"]["s3_base_path"] == f"flux/loras/{job_id}", run["input"]

        reply = wait_for_delivery(server, job_id)
        found = check_artifacts(reply, run, "s3")
        assert found[WEIGHTS]["location"] == f"s3://models/flux/loras/{job_id}/{WEIGHTS}", found[WEIGHTS]
        assert found[WEIGHTS]["download_url"] is None
        listed = moto_client(moto_url).list_objects_v2(Bucket="models", Prefix=f"flux/loras/{job_id}/")
        assert {obj["Key"].rsplit(f"{job_id}/", 1)[1]: obj["Size"] for obj in listed["Contents"]} == {
            path: item["size_bytes"] for path, item in found.items()
        }
        assert reply["delivery"]["reported"] == f"s3://models/flux/loras/{job_id}", reply["delivery"]

    # The secret key is never shown back, nor logged.
    job = server.job(job_id)
    assert job["publishing"]["stored_secrets"] == ["s3_access_key", "s3_secret_key"], job["publishing"]
    for text in (json.dumps(job), json.dumps(reply), server.log_text()):
        assert MOTO_KEY[1] not in text
    with server.http() as http:
        not_local = http.get(f"/api/cloud/jobs/{job_id}/artifacts/{found[WEIGHTS]['id']}/download")
    assert (not_local.status_code, not_local.json()["code"]) == (400, "artifact_not_local"), not_local.text
    refused = run_cli("jobs", "download", job_id, "--to", str(tmp_path / "dl"), url=server.url, expect=1)
    assert "no files on this server" in refused.stderr and f"s3://models/flux/loras/{job_id}/" in refused.stderr


def test_hugging_face_delivery_with_a_model_card(
    tmp_path: Path, servers: ServerFactory, fake: FakeReplicateRemote
) -> None:
    dataset = make_dataset(tmp_path)
    with fake_hub() as hub:
        fake.configure(hf_endpoint=hub.url)
        server = delivery_server(servers, fake, public_url=False, env={"CLOUDTUNER_HF_ENDPOINT": hub.url})
        publishing = {
            "destination": "huggingface",
            "hub_model_id": "cloudtuner-test/my-lora",
            "private": True,
            "hf_token": HUB_TOKEN,
        }
        job_id = submit(server, seed_body(dataset.folder, publishing=publishing))
        wait_for_job(server, job_id, "completed", timeout=60)
        run = delivered_run(fake, job_id)
        assert run["input"]["hub_model_id"] == "cloudtuner-test/my-lora", run["input"]
        assert json.loads(run["input"]["config_json"])["--model_card_private"] is True

        reply = wait_for_delivery(server, job_id)
        found = check_artifacts(reply, run, "huggingface")
        assert found[WEIGHTS]["web_url"] == f"https://huggingface.co/cloudtuner-test/my-lora/blob/main/{WEIGHTS}"
        card = found["README.md"]
        assert card["kind"] == "model_card" and card["sha256"], card

        repo = hub.repos()["cloudtuner-test/my-lora"]
        assert repo["private"] is True, repo
        readme = hub.state.repos["cloudtuner-test/my-lora"].files["README.md"].content.decode()
        job = server.job(job_id)
        assert hashlib.sha256(readme.encode()).hexdigest() == card["sha256"]
        assert 'base_model: "black-forest-labs/FLUX.1-dev"' in readme, readme
        assert "`--lora_rank` | 16" in readme and "training-images" in readme, readme
        assert f"US${job['cost_usd']:.2f}" in readme, readme
        assert job["publishing"] == {
            "destination": "huggingface",
            "hub_model_id": "cloudtuner-test/my-lora",
            "private": True,
            "s3_endpoint_url": None,
            "s3_bucket": None,
            "s3_base_path": None,
            "s3_region": None,
            "s3_public_base_url": None,
            "stored_secrets": ["hf_token"],
        }
        assert HUB_TOKEN not in json.dumps(job) + server.log_text()


@pytest.mark.parametrize(
    ("publishing", "public_url", "code"),
    [
        ({"destination": "local"}, False, "public_url_required"),
        ({"destination": "s3", "s3_bucket": "models"}, False, "invalid_publishing"),
        ({"destination": "huggingface", "hub_model_id": "me/lora"}, False, "invalid_publishing"),
        ({"hub_model_id": "me/lora", "s3_bucket": "models", "hf_token": "t"}, False, "invalid_publishing"),
    ],
)
def test_undeliverable_jobs_are_refused_at_submit(
    tmp_path: Path,
    servers: ServerFactory,
    fake: FakeReplicateRemote,
    publishing: dict[str, Any],
    public_url: bool,
    code: str,
) -> None:
    dataset = make_dataset(tmp_path)
    server = delivery_server(servers, fake, public_url=public_url)
    with server.http() as http:
        reply = http.post(
            "/api/cloud/jobs/submit",
            params={"provider": "replicate"},
            json=seed_body(dataset.folder, publishing=publishing),
        )
    assert (reply.status_code, reply.json()["code"]) == (400, code), reply.text
    assert fake.runs() == []
    assert httpx.get(f"{server.url}/api/cloud/jobs", timeout=5.0, trust_env=False).json()["jobs"] == []
