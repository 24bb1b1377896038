"""Helpers for e2e tests of a multi-user server: the CLI with its own config dir, admins, keys."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.harness import TERMINAL, CliResult, ServerProcess, checked_cli, clean_env, cli_command, run_process
from tests.support.waiting import wait_until_sync

ADMIN = "admin"
ADMIN_PASSWORD = "correct horse battery staple"


@dataclass
class Cli:
    """Runs `cloudtuner` with its own config dir (where `cloudtuner login` saves sessions)."""

    config_home: Path

    def env(self, server: ServerProcess | None = None, **extra: str) -> dict[str, str]:
        values = {"XDG_CONFIG_HOME": str(self.config_home)}
        if server is not None:
            values["CLOUDTUNER_URL"] = server.url
            if server.database_url is not None:  # for `admin`, which opens the server's store
                values["CLOUDTUNER_DATABASE_URL"] = server.database_url
        values.update(extra)
        return clean_env(**values)

    def run(
        self,
        *args: str,
        server: ServerProcess | None = None,
        stdin: str | None = None,
        expect: int | None = 0,
        env: dict[str, str] | None = None,
        timeout: float = 60.0,
    ) -> CliResult:
        """Run `cloudtuner ARGS...`; check its exit code unless ``expect`` is None; no traceback."""
        result = run_process(
            [*cli_command(), *args], env=self.env(server, **(env or {})), timeout=timeout, stdin=stdin or ""
        )
        return checked_cli(args, result, expect)

    def create_admin(self, server: ServerProcess, username: str = ADMIN, password: str = ADMIN_PASSWORD) -> CliResult:
        """`cloudtuner admin create USERNAME --password-stdin --data-dir DIR`, as on the server's machine."""
        return self.run(
            "admin",
            "create",
            username,
            "--password-stdin",
            "--data-dir",
            str(server.data_dir),
            server=server,
            stdin=password + "\n",
        )

    def login(self, server: ServerProcess, username: str = ADMIN, password: str = ADMIN_PASSWORD) -> CliResult:
        """`cloudtuner login --username U --password-stdin`."""
        return self.run("login", "--username", username, "--password-stdin", server=server, stdin=password + "\n")


def api(server: ServerProcess, token: str | None = None) -> httpx.Client:
    """Return an HTTP client for ``server`` that sends ``token`` (close it after use)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=server.url, timeout=10.0, trust_env=False, headers=headers)


def session_token(server: ServerProcess, username: str = ADMIN, password: str = ADMIN_PASSWORD) -> str:
    """Sign in over HTTP; return the session token."""
    with api(server) as http:
        reply = http.post("/api/auth/login", json={"username": username, "password": password})
    assert reply.status_code == 200, reply.text
    token: str = reply.json()["session_token"]
    return token


def wait_for_job(server: ServerProcess, token: str, job_id: str, *statuses: str) -> dict[str, Any]:
    """Poll a job with ``token`` until its status is one of ``statuses``."""

    def probe() -> dict[str, Any]:
        with api(server, token) as http:
            reply = http.get(f"/api/cloud/jobs/{job_id}")
        assert reply.status_code == 200, reply.text
        job: dict[str, Any] = reply.json()["job"]
        if job["status"] in TERMINAL and job["status"] not in statuses:
            raise AssertionError(f"job {job_id} ended {job['status']}: {job}")
        return job

    return wait_until_sync(probe, lambda job: job["status"] in statuses, timeout=30, interval=0.1)
