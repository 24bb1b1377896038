"""A multi-user server from the outside: the seeds' API-key example with curl, the tutorial's
GitHub Actions workflow run unchanged with a key, and no secret in any log line or reply.

The workflow is the one of ``test_github_actions.py`` (the tutorial's two ``run:`` steps with
GitHub's substitutions). It has no Authorization header, so the key rides where CI keeps the
server's address anyway, in the secret ``SIMPLETUNER_URL``: ``http://ci:stk_...@host:port``. curl
sends it as HTTP Basic credentials, which cloudtuner takes as the API key.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import INLINE_JOB, CliResult, ServerFactory, ServerProcess, clean_env, run_process
from tests.e2e.multi_user_support import ADMIN_PASSWORD, Cli, api, session_token
from tests.e2e.test_github_actions import BAD_SHA, GOOD_SHA, RUN_NUMBER, workflow_script

pytestmark = [
    pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed"),
    pytest.mark.skipif(shutil.which("jq") is None, reason="jq is not installed; the workflow needs it"),
]

# The seeds' "API key authentication" commands, text for text (localhost:8001 is the test server's
# address, YOUR_SESSION_TOKEN the session, PROVIDER the scripted provider, {...} an inline job).
SEED_CREATE_KEY = """curl -s -X POST 'http://localhost:8001/api/cloud/auth/api-keys' \\
  -H 'Content-Type: application/json' \\
  -H 'Authorization: Bearer YOUR_SESSION_TOKEN' \\
  -d '{
    "name": "ci-pipeline",
    "expires_days": 90,
    "scoped_permissions": ["job.submit", "job.view.own"]
  }'
"""
SEED_USE_KEY = """curl -s -X POST 'http://localhost:8001/api/cloud/jobs/submit?provider=PROVIDER' \\
  -H 'Content-Type: application/json' \\
  -H 'Authorization: Bearer stk_abc123...' \\
  -d '{...}'
"""

ALICE_PASSWORD = "alice long passphrase 7"
REPLICATE_TOKEN = "r8_e2eTokenThatMustNeverAppearAnywhere42"


def bash(script: str, **env: str) -> CliResult:
    """Run ``script`` with bash -e (as GitHub runs a step)."""
    return run_process(["bash", "-e", "-c", script], env=clean_env(**env), timeout=60)


def seed_command(template: str, server: ServerProcess, **fills: str) -> str:
    command = template.replace("http://localhost:8001", server.url)
    for old, new in fills.items():
        assert old in command, old
        command = command.replace(old, new)
    return command


def save_production_lora(cli: Cli, server: ServerProcess, folder: Path, outcome: str) -> CliResult:
    """Save `production-lora` with the CLI (signed in as the admin); its runs end with ``outcome``."""
    (folder / "config.json").write_text(json.dumps({**INLINE_JOB["config"], "--scripted_outcome": outcome}))
    (folder / "multidatabackend.json").write_text(json.dumps(INLINE_JOB["dataloader_config"]))
    return cli.run(
        "configs",
        "put",
        "production-lora",
        "--config-file",
        str(folder / "config.json"),
        "--dataloader-file",
        str(folder / "multidatabackend.json"),
        server=server,
    )


def run_workflow(simpletuner_url: str, folder: Path, github_sha: str) -> tuple[CliResult, str]:
    """Run the tutorial's workflow against ``simpletuner_url``; return the run and its job id."""
    github_env = folder / f"github_env_{github_sha[:8]}_{len(list(folder.glob('github_env_*')))}"
    github_env.touch()
    script = folder / "workflow.sh"
    script.write_text(workflow_script(github_sha))
    result = run_process(
        ["bash", "-e", str(script)],
        env=clean_env(SIMPLETUNER_URL=simpletuner_url, GITHUB_ENV=str(github_env)),
        cwd=folder,
        timeout=60,
    )
    lines = result.stdout.splitlines()
    assert lines and lines[0].startswith("Submitted job: "), result.describe()
    job_id = lines[0].removeprefix("Submitted job: ")
    assert len(job_id) == 26, result.describe()
    assert github_env.read_text() == f"JOB_ID={job_id}\n"
    return result, job_id


def test_seed_key_and_github_actions_against_a_multi_user_server(
    database_url: str | None, servers: ServerFactory, tmp_path: Path
) -> None:
    del database_url
    server = servers.create()
    cli = Cli(tmp_path / "config")
    replies: list[str] = []  # every reply and output that must not hold a secret

    # The first admin, created on the server's machine before it starts.
    created = cli.create_admin(server)
    assert "multi-user mode" in created.stdout, created.describe()
    server.start()
    replies.append(cli.login(server).stdout)
    alice_created = cli.run(
        "users", "create", "alice", "--role", "researcher", "--password-stdin", server=server, stdin=ALICE_PASSWORD
    )
    replies.append(alice_created.stdout)
    save = save_production_lora(cli, server, tmp_path, "complete")
    replies.append(save.stdout)

    # Alice signs in with curl and creates the seeds' key with the seeds' command.
    login = bash(
        f"curl -s -X POST '{server.url}/api/auth/login' -H 'Content-Type: application/json' "
        f'-d \'{{"username": "alice", "password": "{ALICE_PASSWORD}"}}\' | jq -r .session_token'
    )
    alice_session = login.stdout.strip()
    assert alice_session.startswith("sess_"), login.describe()
    created_key = bash(seed_command(SEED_CREATE_KEY, server, YOUR_SESSION_TOKEN=alice_session))
    key_reply = json.loads(created_key.stdout)
    key = key_reply["key"]
    assert key.startswith("stk_") and key_reply["scoped_permissions"] == ["job.submit", "job.view.own"]

    # "Using an API key": the seeds' submit, with the key.
    used = bash(
        seed_command(
            SEED_USE_KEY, server, PROVIDER="scripted", **{"stk_abc123...": key, "{...}": json.dumps(INLINE_JOB)}
        )
    )
    used_reply = json.loads(used.stdout)
    assert used_reply["success"] is True and used_reply["status"] == "queued", used.describe()
    replies.append(used.stdout)

    # Anonymous, the workflow's own submit is refused; with the key in the URL, it runs unchanged.
    anonymous = bash(
        f"curl -s -X POST '{server.url}/api/cloud/jobs/submit?provider=scripted' "
        "-H 'Content-Type: application/json' -d '{\"config_name_to_load\": \"production-lora\"}'"
    )
    assert json.loads(anonymous.stdout)["code"] == "authentication_required", anonymous.describe()
    keyed_url = server.url.replace("http://", f"http://ci:{key}@")
    passed, job_id = run_workflow(keyed_url, tmp_path, GOOD_SHA)
    assert passed.code == 0 and passed.stdout.splitlines()[-1] == "Job status: completed", passed.describe()
    rerun, same_id = run_workflow(keyed_url, tmp_path, GOOD_SHA)
    assert rerun.code == 0 and same_id == job_id, rerun.describe()
    replies.append(save_production_lora(cli, server, tmp_path, "fail").stdout)
    failed, failed_id = run_workflow(keyed_url, tmp_path, BAD_SHA)
    assert failed.code == 1 and failed.stdout.splitlines()[-1] == "Job status: failed", failed.describe()
    replies.extend(run.stdout + run.stderr for run in (passed, rerun, failed))

    admin_token = session_token(server)
    with api(server, admin_token) as http:
        job = http.get(f"/api/cloud/jobs/{job_id}").json()["job"]
        alice_id = http.get("/api/users/alice").json()["user"]["id"]
    assert job["owner_id"] == alice_id and job["idempotency_key"] == f"gh-{GOOD_SHA}"
    assert job["tracker_run_name"] == f"gh-run-{RUN_NUMBER}" and job["config_name"] == "production-lora"

    # The key sees alice's jobs only, and may not cancel.
    bob = cli.run("users", "create", "bob", "--password-stdin", server=server, stdin=ADMIN_PASSWORD)
    replies.append(bob.stdout)
    bob_token = session_token(server, "bob", ADMIN_PASSWORD)
    with api(server, bob_token) as http:
        bobs_job = http.post("/api/cloud/jobs/submit", params={"provider": "scripted"}, json=INLINE_JOB).json()
    with api(server, key) as http:
        own = [j["job_id"] for j in http.get("/api/cloud/jobs").json()["jobs"]]
        assert set(own) == {job_id, failed_id, used_reply["job_id"]}
        assert http.get(f"/api/cloud/jobs/{bobs_job['job_id']}").status_code == 404
        assert http.post(f"/api/cloud/jobs/{bobs_job['job_id']}/cancel").status_code == 403
        assert http.post(f"/api/cloud/jobs/{used_reply['job_id']}/cancel").status_code == 403

    assert_no_secret_leaks(
        server,
        cli,
        admin_token,
        replies,
        secrets={
            "API key": key,
            "alice's session": alice_session,
            "admin session": admin_token,
            "alice's password": ALICE_PASSWORD,
            "admin password": ADMIN_PASSWORD,
        },
    )
    server.stop()


def assert_no_secret_leaks(
    server: ServerProcess, cli: Cli, admin_token: str, replies: list[str], secrets: dict[str, str]
) -> None:
    """Save a provider token and make an S3 key, read every listing, then grep the server's log,
    every reply and every CLI output for each secret used."""
    with api(server, admin_token) as http:
        saved = http.put("/api/cloud/providers/replicate/token", json={"token": REPLICATE_TOKEN})
        assert saved.status_code == 200, saved.text
        replies.append(saved.text)
        storage_key = http.post("/api/cloud/storage/credentials", json={"name": "e2e"})
        assert storage_key.status_code == 201, storage_key.text
        secrets["provider token"] = REPLICATE_TOKEN
        secrets["S3 secret"] = storage_key.json()["secret_access_key"]  # shown in that one reply only
        paths = [
            "/api/cloud/jobs?limit=500",
            "/api/cloud/providers",
            "/api/cloud/providers/replicate",
            "/api/cloud/settings",
            "/api/cloud/storage/credentials",
            "/api/cloud/auth/api-keys?all=true",
            "/api/users",
            "/api/auth/me",
            "/api/auth/sessions",
            "/api/audit?limit=500",
            "/api/audit/verify",
        ]
        jobs = http.get("/api/cloud/jobs?limit=500").json()["jobs"]
        for job in jobs:
            paths += [f"/api/cloud/jobs/{job['job_id']}", f"/api/cloud/jobs/{job['job_id']}/logs"]
        for path in paths:
            reply = http.get(path)
            assert reply.status_code == 200, (path, reply.text)
            replies.append(reply.text)
    for args in (("keys", "list", "--all"), ("users", "list"), ("audit", "list"), ("whoami",)):
        result = cli.run(*args, server=server)
        replies.append(result.stdout + result.stderr)
    verified = cli.run("audit", "verify", server=server)
    assert "Audit log intact" in verified.stdout, verified.describe()
    everything = {"server log": server.log_text(), **{f"reply {i}": text for i, text in enumerate(replies)}}
    for where, text in everything.items():
        for what, secret in secrets.items():
            assert secret not in text, f"the {what} appears in {where}"
    logged: Any = server.log_text()
    assert "Traceback" not in logged
