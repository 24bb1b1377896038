"""The seed tutorial's GitHub Actions workflow, run as a bash script against a real server.

The two ``run:`` steps are the tutorial's, text for text, with only what GitHub would fill in
replaced: the ``${{ ... }}`` expressions by fixed values, ``$GITHUB_ENV`` by a temp file,
``provider=replicate`` by ``provider=scripted`` and ``sleep 60`` by ``sleep 1``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.e2e.harness import INLINE_JOB, CliResult, ServerProcess, clean_env, run_cli, run_process

pytestmark = [
    pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed"),
    pytest.mark.skipif(
        shutil.which("jq") is None, reason="jq is not installed; the tutorial's GitHub Actions script needs it"
    ),
]

SUBMIT_STEP = """\
RESPONSE=$(curl -s -X POST "$SIMPLETUNER_URL/api/cloud/jobs/submit?provider=replicate" \\
  -H 'Content-Type: application/json' \\
  -d '{
    "config_name_to_load": "production-lora",
    "idempotency_key": "gh-${{ github.sha }}",
    "tracker_run_name": "gh-run-${{ github.run_number }}"
  }')

JOB_ID=$(echo $RESPONSE | jq -r '.job_id')
echo "Submitted job: $JOB_ID"
echo "JOB_ID=$JOB_ID" >> $GITHUB_ENV
"""

WAIT_STEP = """\
while true; do
  STATUS=$(curl -s "$SIMPLETUNER_URL/api/cloud/jobs/$JOB_ID" | jq -r '.job.status')
  echo "Job status: $STATUS"

  case $STATUS in
    completed) exit 0 ;;
    failed|cancelled) exit 1 ;;
    *) sleep 60 ;;
  esac
done
"""

GOOD_SHA = "3f786850e387550fdab836ed7e6dc881de23001b"
BAD_SHA = "89e6c98d92887913cadf06b2adb97f26cde4849b"
RUN_NUMBER = "42"


def workflow_script(github_sha: str) -> str:
    """Return both steps as one script, with GitHub's substitutions made."""
    script = SUBMIT_STEP + "\n" + WAIT_STEP
    for old, new in (
        ("${{ github.sha }}", github_sha),
        ("${{ github.run_number }}", RUN_NUMBER),
        ("provider=replicate", "provider=scripted"),
        ("sleep 60", "sleep 1"),
    ):
        assert script.count(old) == 1, old
        script = script.replace(old, new)
    return script


def save_production_lora(server: ServerProcess, folder: Path, outcome: str) -> None:
    """Save the config `production-lora` with the CLI; its runs end with ``outcome``."""
    config = {**INLINE_JOB["config"], "--scripted_outcome": outcome}
    config_file = folder / "config.json"
    dataloader_file = folder / "multidatabackend.json"
    config_file.write_text(json.dumps(config))
    dataloader_file.write_text(json.dumps(INLINE_JOB["dataloader_config"]))
    result = run_cli(
        "configs",
        "put",
        "production-lora",
        "--config-file",
        str(config_file),
        "--dataloader-file",
        str(dataloader_file),
        url=server.url,
    )
    assert "Saved config production-lora" in result.stdout, result.describe()


def run_workflow(server: ServerProcess, folder: Path, github_sha: str) -> tuple[CliResult, str]:
    """Run the workflow for commit ``github_sha``; return the run and the job id it printed."""
    github_env = folder / f"github_env_{len(list(folder.glob('github_env_*')))}"
    github_env.touch()
    script = folder / "workflow.sh"
    script.write_text(workflow_script(github_sha))
    checkout = folder / "checkout"
    checkout.mkdir(exist_ok=True)
    # GitHub runs a `run:` step with `bash -e`.
    result = run_process(
        ["bash", "-e", str(script)],
        env=clean_env(SIMPLETUNER_URL=server.url, GITHUB_ENV=str(github_env)),
        cwd=checkout,
        timeout=60,
    )
    lines = result.stdout.splitlines()
    assert lines and lines[0].startswith("Submitted job: "), result.describe()
    job_id = lines[0].removeprefix("Submitted job: ")
    assert len(job_id) == 26, result.describe()
    assert github_env.read_text() == f"JOB_ID={job_id}\n"
    assert all(line.startswith("Job status: ") for line in lines[1:]), result.describe()
    return result, job_id


def test_github_actions_workflow(database_url: str | None, server: ServerProcess, tmp_path: Path) -> None:
    del database_url

    # The job completes: the workflow succeeds.
    save_production_lora(server, tmp_path, "complete")
    passed, job_id = run_workflow(server, tmp_path, GOOD_SHA)
    assert passed.code == 0, passed.describe()
    assert passed.stdout.splitlines()[-1] == "Job status: completed", passed.describe()
    job = server.job(job_id)
    assert job["status"] == "completed", job
    assert job["provider"] == "scripted", job
    assert job["config_name"] == "production-lora", job
    assert job["idempotency_key"] == f"gh-{GOOD_SHA}", job
    assert job["tracker_run_name"] == f"gh-run-{RUN_NUMBER}", job

    # A re-run of the same commit submits nothing new: the idempotency key returns the same job.
    rerun, same_id = run_workflow(server, tmp_path, GOOD_SHA)
    assert rerun.code == 0 and same_id == job_id, rerun.describe()

    # The job fails: the workflow fails.
    save_production_lora(server, tmp_path, "fail")
    failed, failed_id = run_workflow(server, tmp_path, BAD_SHA)
    assert failed.code == 1, failed.describe()
    assert failed.stdout.splitlines()[-1] == "Job status: failed", failed.describe()
    assert failed_id != job_id
    assert server.job(failed_id)["status"] == "failed"

    with server.http() as http:
        assert [j["job_id"] for j in http.get("/api/cloud/jobs").json()["jobs"]] == [failed_id, job_id]
    server.stop()
