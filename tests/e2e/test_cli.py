"""The `cloudtuner` command against a real server: configs, jobs, and its one-line errors.

The CLI is an HTTP client only, so these tests run on the server's default SQLite store: what the
database does under the same requests is covered on PostgreSQL too by the seed, GitHub Actions,
crash and two-server tests (and the integration tier). Most of their time is the interpreter
start-up of each `cloudtuner` process, which would double the tier's run time on PostgreSQL for
no new path through the server.
"""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tests.e2e.harness import (
    INLINE_JOB,
    ServerProcess,
    assert_one_line_error,
    free_port,
    inline_job,
    run_cli,
)

UNKNOWN_JOB_ID = "01zzzzzzzzzzzzzzzzzzzzzzzz"
SUBMITTED = re.compile(r"Submitted job (\w{26}) to scripted")


def write_config_folder(root: Path, name: str, datasets: list[str], **config: Any) -> Path:
    """Write a SimpleTuner config folder ``root/config/<name>``, as SimpleTuner lays it out."""
    folder = root / "config" / name
    folder.mkdir(parents=True, exist_ok=True)
    arguments = {
        **INLINE_JOB["config"],
        "--data_backend_config": f"config/{name}/multidatabackend.json",
        **config,
    }
    (folder / "config.json").write_text(json.dumps(arguments, indent=2))
    backends = [
        {**INLINE_JOB["dataloader_config"][0], "id": dataset, "instance_data_dir": f"/data/{dataset}"}
        for dataset in datasets
    ]
    (folder / "multidatabackend.json").write_text(json.dumps(backends, indent=2))
    return folder


def submitted_id(stdout: str) -> str:
    match = SUBMITTED.search(stdout)
    assert match, stdout
    return match.group(1)


def test_cli_configs_and_jobs(server: ServerProcess, tmp_path: Path) -> None:
    url = server.url
    # --- configs: import a SimpleTuner config folder, and a folder of them ---
    simpletuner = tmp_path / "SimpleTuner"
    write_config_folder(simpletuner, "flux-a", ["flux-a-images"], **{"--lora_rank": 16})
    write_config_folder(
        simpletuner,
        "flux-b",
        ["flux-b-images", "flux-b-reg"],
        **{"--model_family": "sdxl", "--scripted_outcome": "fail"},
    )

    # One config folder, named after the folder.
    single = run_cli("configs", "import", "config/flux-a", url=url, cwd=simpletuner)
    assert re.fullmatch(
        r"Imported flux-a from config/flux-a \(1 dataset\(s\), version [0-9a-f]{12}\)\.\n", single.stdout
    ), single.describe()

    # A changed flux-a, and the parent folder holding both, imported from elsewhere.
    write_config_folder(simpletuner, "flux-a", ["flux-a-images"], **{"--lora_rank": 32})
    both = run_cli("configs", "import", str(simpletuner / "config"), url=url, cwd=tmp_path)
    imported = [line for line in both.stdout.splitlines() if line.startswith("Imported ")]
    assert [line.split()[1] for line in imported] == ["flux-a", "flux-b"], both.describe()
    assert "(2 dataset(s)" in imported[1], both.describe()

    table = run_cli("configs", "list", url=url)
    for expected in ("flux-a", "flux-b", "sdxl", "lora"):
        assert expected in table.stdout, table.describe()
    listed = run_cli("configs", "list", "--json", url=url).json()
    assert {c["name"]: c["datasets"] for c in listed["configs"]} == {"flux-a": 1, "flux-b": 2}, listed

    shown = run_cli("configs", "show", "flux-a", url=url).json()
    assert shown["name"] == "flux-a", shown
    assert shown["config"]["--lora_rank"] == 32, shown
    assert shown["config"]["--data_backend_config"] == "config/flux-a/multidatabackend.json", shown
    assert [d["id"] for d in shown["dataloader_config"]] == ["flux-a-images"], shown
    assert shown["dataloader_config"][0]["instance_data_dir"] == "/data/flux-a-images", shown

    history = run_cli("configs", "history", "flux-a", url=url)
    lines = history.stdout.strip().splitlines()
    assert len(lines) == 2, history.describe()
    assert all(re.match(r"[0-9a-f]{12}  \d{4}-\d\d-\d\d \d\d:\d\d:\d\d  ", line) for line in lines), history.describe()
    assert lines[0].split()[0] == shown["latest_commit"][:12], history.describe()

    error = assert_one_line_error(run_cli("configs", "show", "no-such-config", url=url, expect=None))
    assert "no-such-config" in error

    # --- jobs ---
    # --watch: exit 0 when the job completes, 1 when it fails. Both wait mostly, so side by side.
    with ThreadPoolExecutor(max_workers=2) as pool:
        watches = [
            pool.submit(
                run_cli, "jobs", "submit", "--config", name, "--provider", "scripted", "--watch", url=url, expect=code
            )
            for name, code in (("flux-a", 0), ("flux-b", 1))
        ]
        watched, failing = (watch.result() for watch in watches)
    completed_id, failed_id = submitted_id(watched.stdout), submitted_id(failing.stdout)
    assert watched.stdout.strip().splitlines()[-1].startswith(f"{completed_id} completed step=4/4"), watched.describe()
    assert failing.stdout.strip().splitlines()[-1].startswith(f"{failed_id} failed"), failing.describe()
    assert "scripted failure" in failing.stderr, failing.describe()

    # --config-dir sends the folder inline.
    inline = run_cli(
        "jobs", "submit", "--config-dir", "config/flux-a", "--provider", "scripted", url=url, cwd=simpletuner
    )
    inline_id = submitted_id(inline.stdout)
    job = server.wait_for_status(inline_id, "completed")
    assert job["config_snapshot"]["source"] == "inline" and job["config_name"] is None, job
    assert [d["id"] for d in job["dataloader_config"]] == ["flux-a-images"], job

    # list (table, --json, --status), show, logs.
    table = run_cli("jobs", "list", url=url)
    for job_id in (completed_id, failed_id, inline_id):
        assert job_id in table.stdout, table.describe()
    listed = run_cli("jobs", "list", "--json", url=url).json()
    listed_ids = [j["job_id"] for j in listed["jobs"]]
    assert listed_ids[0] == inline_id and set(listed_ids) == {inline_id, failed_id, completed_id}, listed
    assert listed_ids == sorted(listed_ids, reverse=True), listed
    assert listed["next_cursor"] is None, listed
    only_failed = run_cli("jobs", "list", "--status", "failed", "--json", url=url).json()
    assert [j["job_id"] for j in only_failed["jobs"]] == [failed_id], only_failed
    assert only_failed["jobs"][0]["error"] == "scripted failure", only_failed
    shown = run_cli("jobs", "show", completed_id, url=url)
    for expected in (completed_id, "completed", "scripted", "Timeline", "submitted", "dispatched", "flux-a"):
        assert expected in shown.stdout, shown.describe()
    logs = run_cli("jobs", "logs", completed_id, url=url)
    assert logs.stdout.startswith("Loading model\n") and logs.stdout.endswith("Training complete\n"), logs.describe()

    # logs --follow prints the log as it grows and returns once the job has ended.
    dataloader_file = simpletuner / "config" / "flux-a" / "multidatabackend.json"
    slow_file = tmp_path / "slow.json"
    slow_file.write_text(json.dumps({**INLINE_JOB["config"], "--scripted_seconds": 1.5}))
    slow = run_cli(
        "jobs",
        "submit",
        "--config-file",
        str(slow_file),
        "--dataloader-file",
        str(dataloader_file),
        "--provider",
        "scripted",
        "--json",
        url=url,
    ).json()
    slow_id = slow["job_id"]
    assert slow["status"] == "queued", slow
    followed = run_cli("jobs", "logs", slow_id, "--follow", "--interval", "0.2", url=url, timeout=30)
    assert server.job(slow_id)["status"] == "completed"
    with server.http() as http:
        full_log = http.get(f"/api/cloud/jobs/{slow_id}/logs").json()["logs"]
    assert followed.stdout == full_log, followed.describe()
    assert followed.stdout.count("Loading model") == 1, followed.describe()
    assert followed.stdout.endswith("Training complete\n"), followed.describe()

    # A running job cannot be deleted; it can be cancelled.
    hanging_id = server.submit(inline_job(**{"--scripted_outcome": "hang"}))
    server.wait_for_status(hanging_id, "running")
    refused = assert_one_line_error(run_cli("jobs", "delete", hanging_id, url=url, expect=None))
    assert hanging_id in refused and "running" in refused, refused
    cancelled = run_cli("jobs", "cancel", hanging_id, url=url)
    assert cancelled.stdout.strip() == f"Job {hanging_id} is cancelled.", cancelled.describe()
    assert server.job(hanging_id)["status"] == "cancelled"

    # delete a finished job; afterwards, like any unknown id, it is an error.
    deleted = run_cli("jobs", "delete", completed_id, url=url)
    assert deleted.stdout.strip() == f"Deleted job {completed_id}.", deleted.describe()
    gone = assert_one_line_error(run_cli("jobs", "show", completed_id, url=url, expect=None))
    assert completed_id in gone, gone
    unknown = assert_one_line_error(run_cli("jobs", "logs", UNKNOWN_JOB_ID, url=url, expect=None))
    assert UNKNOWN_JOB_ID in unknown, unknown

    # --idempotency-key: the same submission again returns the same job.
    submit = ("jobs", "submit", "--config", "flux-a", "--provider", "scripted", "--idempotency-key", "ci-1")
    first = run_cli(*submit, "--json", url=url).json()
    assert first["idempotent_hit"] is False, first
    jobs_before = run_cli("jobs", "list", "--json", url=url).json()["jobs"]
    second = run_cli(*submit, url=url)
    assert f"Job {first['job_id']} already exists for this idempotency key" in second.stdout, second.describe()
    with server.http() as http:
        assert len(http.get("/api/cloud/jobs").json()["jobs"]) == len(jobs_before)
    server.wait_for_status(first["job_id"], "completed")

    server.stop()


def test_unreachable_server() -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    for result in (
        run_cli("jobs", "list", url=nowhere, expect=None),
        run_cli("configs", "list", "--url", nowhere, expect=None),
    ):
        line = assert_one_line_error(result)
        assert f"Cannot reach the cloudtuner server at {nowhere}" in line, line
