"""The CLI of a multi-user server: `admin create`, `login` (token file 0600), `keys`, `users`,
`audit`, `logout`; the switch from single-user mode; the refusal to serve a public address with
no admin."""

from __future__ import annotations

import json
import stat
import subprocess
from pathlib import Path

from tests.e2e.harness import REPO_ROOT, ServerFactory, assert_one_line_error, clean_env, cli_command, free_port
from tests.e2e.multi_user_support import ADMIN_PASSWORD, Cli, api
from tests.support.waiting import wait_until_sync


def test_a_public_address_without_an_admin_is_refused_with_a_way_out(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    command = [*cli_command(), "server", "--host", "0.0.0.0", "--port", str(free_port()), "--data-dir", str(data_dir)]
    completed = subprocess.run(
        command, env=clean_env(), cwd=REPO_ROOT, stdin=subprocess.DEVNULL, capture_output=True, timeout=30, check=False
    )
    assert completed.returncode == 2, completed
    err = completed.stderr.decode().strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: Refusing to listen on 0.0.0.0"), err
    assert f"cloudtuner admin create USERNAME --password-stdin --data-dir {data_dir}" in err


def test_admin_create_switches_a_running_server_to_multi_user_mode(servers: ServerFactory, tmp_path: Path) -> None:
    server = servers.start()
    cli = Cli(tmp_path / "config")
    assert "Single-user mode" in cli.run("whoami", server=server).stdout

    weak = cli.run(
        "admin", "create", "root", "--password-stdin", "--data-dir", str(server.data_dir), stdin="short\n", expect=None
    )
    assert "at least 8 characters" in assert_one_line_error(weak)
    cli.create_admin(server)
    again = cli.run(
        "admin",
        "create",
        "admin",
        "--password-stdin",
        "--data-dir",
        str(server.data_dir),
        stdin=ADMIN_PASSWORD,
        expect=None,
    )
    assert "already exists" in assert_one_line_error(again)

    def anonymous_status() -> int:
        with api(server) as http:
            return http.get("/api/cloud/jobs").status_code

    wait_until_sync(anonymous_status, lambda status: status == 401, timeout=10)
    refused = cli.run("jobs", "list", server=server, expect=None)
    assert "cloudtuner login" in assert_one_line_error(refused)


def test_login_keys_users_audit_logout(servers: ServerFactory, tmp_path: Path) -> None:
    server = servers.create()
    cli = Cli(tmp_path / "config")
    cli.create_admin(server)
    server.start()

    wrong = cli.run("login", "-u", "admin", "--password-stdin", server=server, stdin="not the password", expect=None)
    assert "wrong" in assert_one_line_error(wrong)
    logged_in = cli.login(server)
    assert "Logged in to" in logged_in.stdout and "as admin (admin)" in logged_in.stdout
    token_file = tmp_path / "config" / "cloudtuner" / "credentials.json"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(token_file.parent.stat().st_mode) == 0o700
    saved = json.loads(token_file.read_text())["servers"][server.url]
    assert saved["token"].startswith("sess_") and saved["username"] == "admin"
    assert "admin (admin) via session" in cli.run("whoami", server=server).stdout

    # A key for CI: printed alone on stdout, used through CLOUDTUNER_API_KEY.
    created = cli.run(
        "keys",
        "create",
        "ci",
        "--scope",
        "job.submit",
        "--scope",
        "job.view.own",
        "--expires-days",
        "90",
        server=server,
    )
    key = created.stdout.strip()
    assert key.startswith("stk_") and "not shown again" in created.stderr, created.describe()
    with_key = cli.run("whoami", server=server, env={"CLOUDTUNER_API_KEY": key})
    assert "via API key ci" in with_key.stdout and "job.submit, job.view.own" in with_key.stdout
    assert cli.run("jobs", "list", server=server, env={"CLOUDTUNER_API_KEY": key}).code == 0
    lacking = cli.run("users", "list", server=server, env={"CLOUDTUNER_API_KEY": key}, expect=None)
    assert "user.manage" in assert_one_line_error(lacking)
    listed = json.loads(cli.run("keys", "list", "--json", server=server).stdout)["api_keys"]
    assert [(k["name"], k["status"]) for k in listed] == [("ci", "active")] and listed[0]["last_used_at"]
    assert key not in cli.run("keys", "list", server=server).stdout
    cli.run("keys", "revoke", listed[0]["id"], server=server)
    revoked = cli.run("jobs", "list", server=server, env={"CLOUDTUNER_API_KEY": key}, expect=None)
    assert "revoked" in assert_one_line_error(revoked)

    # Users.
    cli.run("users", "create", "bob", "--role", "viewer", "--password-stdin", server=server, stdin="bobs password")
    cli.run("users", "update", "bob", "--role", "lead", "--disable", server=server)
    users = json.loads(cli.run("users", "list", "--json", server=server).stdout)["users"]
    assert [(u["username"], u["role"], u["active"]) for u in users] == [
        ("admin", "admin", True),
        ("bob", "lead", False),
    ]
    last = cli.run("users", "update", "admin", "--role", "viewer", server=server, expect=None)
    assert "last active admin" in assert_one_line_error(last)
    cli.run("users", "delete", "bob", "--yes", server=server)

    # The audit log, and its chain.
    audit = json.loads(cli.run("audit", "list", "--json", server=server).stdout)["entries"]
    actions = [entry["action"] for entry in reversed(audit)]
    assert actions[0] == "create_user" and audit[-1]["via"] == "cli"
    for action in ("login", "create_api_key", "revoke_api_key", "create_user", "update_user", "delete_user"):
        assert action in actions, actions
    assert "Audit log intact" in cli.run("audit", "verify", server=server).stdout

    # Reset a password on the server's machine; logout forgets the session.
    cli.run(
        "admin", "reset-password", "admin", "--password-stdin", "--data-dir", str(server.data_dir),
        server=server, stdin="a brand new passphrase",
    )  # fmt: skip
    gone = cli.run("whoami", server=server, expect=None)
    assert "sign in again" in assert_one_line_error(gone).lower()
    cli.login(server, password="a brand new passphrase")
    assert "Logged out" in cli.run("logout", server=server).stdout
    assert server.url not in json.loads(token_file.read_text())["servers"]
    assert "cloudtuner login" in assert_one_line_error(cli.run("jobs", "list", server=server, expect=None))
