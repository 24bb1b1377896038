"""The seed tutorial's REST workflow, with real `curl` processes against a real server.

The commands are the tutorial's (``simpletuner`` → ``cloudtuner``, ``PROVIDER`` → ``scripted``,
``localhost:8001`` → the test server); where the tutorial pipes to ``jq`` the test reads the same
fields (``.job_id``, ``.job.status``, ``.jobs``, ``.logs``) from the parsed JSON.
"""

from __future__ import annotations

import json
import shutil
from typing import Any

import pytest

from tests.e2e.harness import ServerProcess, clean_env, inline_job, run_process
from tests.support.waiting import wait_until_sync

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")

# The tutorial's inline-config submission, byte for byte.
SEED_INLINE_BODY = """{
    "config": {
      "--model_family": "flux",
      "--model_type": "lora",
      "--pretrained_model_name_or_path": "black-forest-labs/FLUX.1-dev",
      "--output_dir": "/outputs/flux-lora",
      "--max_train_steps": 1000,
      "--lora_rank": 16
    },
    "dataloader_config": [
      {
        "id": "training-images",
        "type": "local",
        "dataset_type": "image",
        "instance_data_dir": "/data/datasets/my-dataset",
        "caption_strategy": "textfile",
        "resolution": 1024
      }
    ]
  }"""

SEED_SAVED_BODY = """{
    "config_name_to_load": "my-training-config",
    "tracker_run_name": "api-test-run"
  }"""

SEED_IDEMPOTENT_BODY = """{
    "config_name_to_load": "my-config",
    "idempotency_key": "ci-build-12345"
  }"""


def curl(*args: str) -> Any:
    """Run ``curl -s ARGS...`` and return the JSON it printed."""
    result = run_process(["curl", "-s", *args], env=clean_env(), timeout=30)
    assert result.code == 0, result.describe()
    try:
        return json.loads(result.stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"curl did not print JSON:\n{result.describe()}") from None


def submit(server: ServerProcess, body: str) -> Any:
    return curl(
        "-X",
        "POST",
        f"{server.url}/api/cloud/jobs/submit?provider=scripted",
        "-H",
        "Content-Type: application/json",
        "-d",
        body,
    )


def job_status(server: ServerProcess, job_id: str) -> str:
    status: str = curl(f"{server.url}/api/cloud/jobs/{job_id}")["job"]["status"]
    return status


def wait_for(server: ServerProcess, job_id: str, status: str, timeout: float = 30.0) -> None:
    def accept(current: str) -> bool:
        assert current == status or current not in ("completed", "failed", "cancelled"), (
            f"job {job_id} ended {current}, expected {status}"
        )
        return current == status

    wait_until_sync(lambda: job_status(server, job_id), accept, timeout=timeout, interval=0.1)


def put_config(server: ServerProcess, name: str, **overrides: Any) -> None:
    body = inline_job(**overrides)
    saved = curl(
        "-X",
        "PUT",
        f"{server.url}/api/configs/{name}",
        "-H",
        "Content-Type: application/json",
        "-d",
        json.dumps(body),
    )
    assert saved["name"] == name, saved


def test_seed_rest_workflow(database_url: str | None, server: ServerProcess) -> None:
    del database_url
    base = server.url

    # Submit with the inline config.
    reply = submit(server, SEED_INLINE_BODY)
    job_id = reply["job_id"]
    assert isinstance(job_id, str) and len(job_id) == 26, reply
    assert reply["success"] is True and reply["idempotent_hit"] is False, reply
    assert reply["status"] == "queued" == reply["job"]["status"], reply
    assert reply["job"]["provider"] == "scripted", reply
    assert reply["job"]["config"]["--max_train_steps"] == 1000, reply
    assert [d["id"] for d in reply["job"]["dataloader_config"]] == ["training-images"], reply

    # Submit a saved config by name, and twice with one idempotency key.
    put_config(server, "my-training-config")
    put_config(server, "my-config")
    saved = submit(server, SEED_SAVED_BODY)
    assert saved["job"]["config_name"] == "my-training-config", saved
    assert saved["job"]["tracker_run_name"] == "api-test-run", saved
    assert saved["job"]["config_snapshot"]["source"] == "saved", saved
    first = submit(server, SEED_IDEMPOTENT_BODY)
    again = submit(server, SEED_IDEMPOTENT_BODY)
    assert first["idempotent_hit"] is False and again["idempotent_hit"] is True, (first, again)
    assert again["job_id"] == first["job_id"], (first, again)

    # Job detail, until it completes.
    wait_for(server, job_id, "completed")
    detail = curl(f"{base}/api/cloud/jobs/{job_id}")
    job = detail["job"]
    assert job["job_id"] == job_id and job["status"] == "completed", detail
    assert job["provider_job_id"], detail
    assert job["config_snapshot"]["source"] == "inline", detail
    assert job["progress"]["step"] == job["progress"]["total_steps"] == 1000, detail
    assert job["events"][0]["to_status"] == "queued", detail
    assert job["events"][-1]["to_status"] == "completed", detail

    # Logs: once the job has ended its final log is read.
    logs = wait_until_sync(
        lambda: curl(f"{base}/api/cloud/jobs/{job_id}/logs"),
        lambda body: "Training complete" in body["logs"],
        timeout=15,
        interval=0.1,
    )
    assert isinstance(logs["logs"], str) and logs["logs"].startswith("Loading model\n"), logs
    assert logs["status"] == "completed" and logs["job_id"] == job_id, logs

    # A job that runs until cancelled.
    hanging = submit(server, json.dumps(inline_job(**{"--scripted_outcome": "hang"})))["job_id"]
    wait_for(server, hanging, "running")

    # The list, and the list after syncing active jobs.
    listing = curl(f"{base}/api/cloud/jobs?limit=10")
    assert [j["job_id"] for j in listing["jobs"]] == [hanging, first["job_id"], saved["job_id"], job_id], listing
    assert listing["has_more"] is False and listing["next_cursor"] is None, listing
    assert curl(f"{base}/api/cloud/jobs?limit=2")["has_more"] is True
    synced = curl(f"{base}/api/cloud/jobs?sync_active=true")
    assert isinstance(synced["sync"]["synced"], int) and synced["sync"]["errors"] == [], synced
    statuses = {j["job_id"]: j["status"] for j in synced["jobs"]}
    assert statuses[hanging] == "running" and statuses[job_id] == "completed", synced

    # Cancel the running job.
    cancelled = curl("-X", "POST", f"{base}/api/cloud/jobs/{hanging}/cancel")
    assert cancelled["job_id"] == hanging and cancelled["status"] == "cancelled", cancelled
    assert cancelled["cancel_requested"] is False, cancelled
    assert job_status(server, hanging) == "cancelled"

    # Delete the finished job; it is gone afterwards.
    deleted = curl("-X", "DELETE", f"{base}/api/cloud/jobs/{job_id}")
    assert deleted == {
        "success": True, "job_id": job_id, "deleted": True, "artifacts_deleted": 0, "artifacts_kept": 0,
    }, deleted  # fmt: skip
    missing = curl(f"{base}/api/cloud/jobs/{job_id}")
    assert missing["code"] == "job_not_found", missing
    assert job_id not in [j["job_id"] for j in curl(f"{base}/api/cloud/jobs?limit=10")["jobs"]]

    wait_for(server, saved["job_id"], "completed")
    wait_for(server, first["job_id"], "completed")
    server.stop()
