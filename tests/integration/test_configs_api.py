"""Saved configs: CRUD, history in git, and the snapshot a job records."""

from __future__ import annotations

import subprocess

from tests.integration.conftest import INLINE_JOB, RunningApp

CONFIG = {"config": INLINE_JOB["config"], "dataloader_config": INLINE_JOB["dataloader_config"]}


async def test_config_lifecycle_and_history(manual: RunningApp) -> None:
    client = manual.client
    assert (await client.get("/api/configs")).json() == {"configs": []}
    created = await client.put("/api/configs/my-training-config", json={**CONFIG, "description": "first"})
    assert created.status_code == 201
    first_commit = created.json()["latest_commit"]
    assert len(first_commit) == 40

    changed = {**CONFIG, "config": {**CONFIG["config"], "--max_train_steps": 2000}}
    replaced = await client.put("/api/configs/my-training-config", json=changed)
    assert replaced.status_code == 200
    second_commit = replaced.json()["latest_commit"]
    assert second_commit != first_commit

    same = await client.put("/api/configs/my-training-config", json=changed)
    assert same.json()["latest_commit"] == second_commit, "saving identical content makes no new version"

    listed = (await client.get("/api/configs")).json()["configs"]
    assert [(c["name"], c["model_family"], c["model_type"], c["datasets"]) for c in listed] == [
        ("my-training-config", "flux", "lora", 1)
    ]
    got = (await client.get("/api/configs/my-training-config")).json()
    assert got["config"]["--max_train_steps"] == 2000
    assert got["dataloader_config"][0]["id"] == "training-images"

    history = (await client.get("/api/configs/my-training-config/history")).json()["history"]
    assert [h["commit"] for h in history] == [second_commit, first_commit]

    # The history is an ordinary git repository.
    repo = manual.ctx.settings.config_history_dir
    log = subprocess.run(["git", "-C", str(repo), "log", "--format=%H"], capture_output=True, text=True, check=True)
    assert log.stdout.split() == [second_commit, first_commit]
    shown = subprocess.run(
        ["git", "-C", str(repo), "show", f"{first_commit}:configs/my-training-config/config.json"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert '"--max_train_steps": 4' in shown.stdout

    assert (await client.delete("/api/configs/my-training-config")).json() == {"success": True}
    assert (await client.get("/api/configs/my-training-config")).status_code == 404
    assert (await client.get("/api/configs/my-training-config/history")).status_code == 200


async def test_a_job_records_the_config_version_it_ran_with(manual: RunningApp) -> None:
    saved = (await manual.client.put("/api/configs/production-lora", json=CONFIG)).json()
    reply = await manual.client.post(
        "/api/cloud/jobs/submit?provider=scripted",
        json={"config_name_to_load": "production-lora", "tracker_run_name": "gh-run-1"},
    )
    assert reply.status_code == 202
    job = reply.json()["job"]
    assert job["config_name"] == "production-lora"
    assert job["config_snapshot"]["source"] == "saved"
    assert job["config_snapshot"]["commit"] == saved["latest_commit"]
    assert job["config"] == CONFIG["config"]

    # A later edit of the config does not change what the job ran with.
    await manual.client.put("/api/configs/production-lora", json={**CONFIG, "config": {"--model_family": "sdxl"}})
    again = (await manual.client.get(f"/api/cloud/jobs/{job['job_id']}")).json()["job"]
    assert again["config"]["--model_family"] == "flux"
    assert again["config_snapshot"]["commit"] == saved["latest_commit"]


async def test_config_errors(manual: RunningApp) -> None:
    client = manual.client
    bad_name = await client.put("/api/configs/.hidden", json=CONFIG)
    assert (bad_name.status_code, bad_name.json()["code"]) == (400, "invalid_config")
    duplicate = {**CONFIG, "dataloader_config": CONFIG["dataloader_config"] * 2}
    assert (await client.put("/api/configs/dup", json=duplicate)).status_code == 400
    missing = await client.put("/api/configs/x", json={"config": {}})
    assert (missing.status_code, missing.json()["code"]) == (422, "validation_error")
    assert (await client.get("/api/configs/nope")).json()["code"] == "config_not_found"
    assert (await client.delete("/api/configs/nope")).status_code == 404
    assert (await client.get("/api/configs")).json() == {"configs": []}
