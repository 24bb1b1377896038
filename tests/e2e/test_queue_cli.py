"""`cloudtuner queue ...` against a real server: the order, positions, priorities and limits.

The server is in single-user mode, so every job is the local admin's and starts at the admin's
priority (20). One job may run at a time; the others wait, hanging jobs keep the slot taken.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.harness import ServerFactory, ServerProcess, assert_one_line_error, inline_job, run_cli
from tests.e2e.multi_user_support import Cli, api
from tests.support.waiting import wait_until_sync

HANG = inline_job(**{"--scripted_outcome": "hang"})


def test_queue_commands(server: ServerProcess) -> None:
    url = server.url
    limits = run_cli(
        "queue", "limits", "set", "--max-concurrent", "1", "--per-user", "3", "--per-team", "2",
        "--per-provider", "4", "--provider-limit", "scripted=2", "--role-priority", "researcher=2", url=url,
    )  # fmt: skip
    for text in ("busy jobs at once", "per team", "provider scripted", "starting priority: researcher"):
        assert text in limits.stdout, limits.describe()
    shown = run_cli("queue", "limits", "--json", url=url).json()
    assert shown["max_concurrent"] == 1 and shown["max_concurrent_per_team"] == 2, shown
    assert shown["max_concurrent_per_user"] == 3 and shown["max_concurrent_per_provider"] == 4, shown
    assert shown["provider_limits"] == {"scripted": 2}, shown
    assert shown["role_priorities"] == {"viewer": 0, "researcher": 2, "lead": 10, "admin": 20}, shown

    empty = run_cli("queue", url=url)
    assert empty.stdout.strip() == "No job is waiting; 0 busy.", empty.describe()

    running = server.submit(HANG)
    server.wait_for_status(running, "running")
    first, second, third = (server.submit(HANG) for _ in range(3))

    table = run_cli("queue", url=url)
    header = table.stdout.splitlines()[0]
    for column in ("#", "JOB", "PRIORITY", "OWNER", "TEAM", "PROVIDER", "AGE", "ETA"):
        assert column in header, table.describe()
    assert [line.split()[2] for line in table.stdout.splitlines()[2:5]] == [first, second, third], table.describe()
    assert "3 waiting, 1 busy." in table.stdout and "local" in table.stdout, table.describe()

    raised = run_cli("queue", "priority", third, "30", url=url)
    assert raised.stdout.startswith(f"Job {third} is number 1 in the queue: priority 30"), raised.describe()
    lowered = run_cli("queue", "priority", first, "-5", "--json", url=url).json()
    assert lowered["position"] == 3 and lowered["priority"] == -5, lowered
    listed = run_cli("queue", "list", "--json", url=url).json()
    assert [job["job_id"] for job in listed["jobs"]] == [third, second, first], listed
    assert listed["depth"] == 3 and listed["running"] == 1, listed
    assert listed["jobs"][1]["priority"] == 20 and listed["jobs"][1]["owner"] == "local", listed

    position = run_cli("queue", "position", second, url=url)
    assert position.stdout.startswith(f"Job {second} is number 2 in the queue: priority 20"), position.describe()
    assert run_cli("queue", "position", second, "--json", url=url).json()["position"] == 2

    missing = assert_one_line_error(run_cli("queue", "position", "01ARZ3NDEKTSV4RRFFQ69G5FAV", url=url, expect=None))
    assert "No job has the id" in missing, missing
    not_waiting = assert_one_line_error(run_cli("queue", "position", running, url=url, expect=None))
    assert "not waiting in the queue" in not_waiting, not_waiting
    bad = assert_one_line_error(run_cli("queue", "limits", "set", "--role-priority", "lead", url=url, expect=None))
    assert "name=number" in bad, bad
    nothing = assert_one_line_error(run_cli("queue", "limits", "set", url=url, expect=None))
    assert "Nothing to change" in nothing, nothing

    cleared = run_cli(
        "queue", "limits", "set", "--max-concurrent", "0", "--provider-limit", "scripted=0", "--json", url=url
    ).json()
    assert cleared["max_concurrent"] is None and cleared["provider_limits"] == {}, cleared
    assert cleared["max_concurrent_per_team"] == 2, cleared
    for job_id in (running, first, second, third):
        run_cli("jobs", "cancel", job_id, url=url)


def test_users_teams_and_who_may_change_the_queue(servers: ServerFactory, tmp_path: Path) -> None:
    server = servers.start()
    admin, researcher = Cli(tmp_path / "admin"), Cli(tmp_path / "researcher")
    admin.create_admin(server)

    def anonymous_status() -> int:
        with api(server) as http:
            return http.get("/api/queue").status_code

    wait_until_sync(anonymous_status, lambda status: status == 401, timeout=10)
    admin.login(server)
    created = admin.run(
        "users", "create", "rita", "--team", "Vision", "--password-stdin", server=server, stdin="ritas password"
    )
    assert created.stdout.strip() == "Created researcher rita in team vision.", created.describe()
    moved = admin.run("users", "update", "rita", "--team", "nlp", server=server)
    assert moved.stdout.strip() == "rita: researcher, team nlp, active.", moved.describe()
    table = admin.run("users", "list", server=server)
    assert "TEAM" in table.stdout.splitlines()[0] and "nlp" in table.stdout, table.describe()
    both = admin.run("users", "update", "rita", "--team", "x", "--no-team", server=server, expect=None)
    assert "not both" in assert_one_line_error(both)
    admin.run("users", "update", "rita", "--no-team", server=server)
    users = json.loads(admin.run("users", "list", "--json", server=server).stdout)["users"]
    assert {u["username"]: u["team"] for u in users} == {"admin": None, "rita": None}, users

    researcher.login(server, "rita", "ritas password")
    refused = researcher.run("queue", "limits", "set", "--per-team", "1", server=server, expect=None)
    assert "queue.manage" in assert_one_line_error(refused)
    allowed = admin.run("queue", "limits", "set", "--per-team", "1", "--json", server=server)
    assert json.loads(allowed.stdout)["max_concurrent_per_team"] == 1, allowed.describe()
