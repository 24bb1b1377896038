"""`cloudtuner cost ...` and the cost columns of `cloudtuner jobs list`, against a real server.

The server runs the scripted provider, priced in its settings at $3.60 an hour: the test job (a
4-step Flux LoRA) is estimated at $0.0072 to $0.0144. Like the other CLI tests it runs on the
server's SQLite store; limits themselves are tested on both databases in the integration tier.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.harness import ServerProcess, assert_one_line_error, inline_job, run_cli

PRICES = {"scripted-gpu": {"price_per_hour": 3.6, "gpu_type": "L40S", "gpu_count": 1, "vram_gb": 48}}


def test_cost_commands_and_job_cost_columns(server: ServerProcess, tmp_path: Path) -> None:
    url = server.url
    with server.http() as http:
        reply = http.put(
            "/api/cloud/providers/scripted", json={"hardware_prices": PRICES, "default_hardware": "scripted-gpu"}
        )
        assert reply.status_code == 200, reply.text

    hardware = run_cli("cost", "hardware", "--provider", "scripted", url=url)
    assert "scripted-gpu (default)" in hardware.stdout and "1x L40S" in hardware.stdout, hardware.describe()
    assert "$3.60" in hardware.stdout and "settings" in hardware.stdout, hardware.describe()

    none = run_cli("cost", "show", url=url)
    assert "No spending limit is set" in none.stdout, none.describe()

    limit = run_cli(
        "cost", "limit", "set", "--amount", "0.02", "--period", "daily", "--action", "block", "--provider", "scripted",
        url=url,
    )  # fmt: skip
    assert limit.stdout.strip() == "Spending limit on scripted jobs: $0.02 daily, action block.", limit.describe()
    run_cli("cost", "limit", "set", "--amount", "100", url=url)  # a global one, monthly warn by default

    # One running job holds its estimate under $0.02; the CLI submits a second, which the limit refuses.
    job_id = server.submit({**inline_job(**{"--scripted_outcome": "hang"}), "budget_usd": 2})
    server.wait_for_status(job_id, "running")
    (tmp_path / "config.json").write_text(json.dumps(inline_job()["config"]))
    (tmp_path / "loader.json").write_text(json.dumps(inline_job()["dataloader_config"]))
    refused = run_cli(
        "jobs", "submit", "--provider", "scripted", "--config-file", str(tmp_path / "config.json"),
        "--dataloader-file", str(tmp_path / "loader.json"), "--yes", url=url, expect=None,
    )  # fmt: skip
    error = assert_one_line_error(refused)
    assert "daily spending limit on scripted jobs" in error and "resets at" in error, error
    run_cli("jobs", "cancel", job_id, url=url)
    server.wait_for_status(job_id, "cancelled")

    shown = run_cli("cost", "show", "--provider", "scripted", url=url)
    assert "Spent $0.0" in shown.stdout and "1 job(s)" in shown.stdout, shown.describe()
    for text in ("scripted", "daily", "block", "global", "monthly", "warn"):
        assert text in shown.stdout, shown.describe()
    as_json = run_cli("cost", "show", "--json", url=url).json()
    scopes = {status["scope"]: status for status in as_json["cost_limit"]["limits"]}
    assert scopes["provider"]["amount"] == 0.02 and scopes["global"]["amount"] == 100, as_json
    assert as_json["metrics"]["jobs_by_status"] == {"cancelled": 1}, as_json

    listed = run_cli("jobs", "list", url=url)
    header = listed.stdout.splitlines()[0]
    for column in ("HARDWARE", "COST", "ESTIMATE", "BUDGET"):
        assert column in header, listed.describe()
    assert job_id in listed.stdout and "scripted-gpu" in listed.stdout, listed.describe()
    assert "$0.0072-$0.01" in listed.stdout and "$2.00" in listed.stdout, listed.describe()
    row = run_cli("jobs", "list", "--json", url=url).json()["jobs"][0]
    assert row["status"] == "cancelled" and row["cost_usd"] > 0, row
    assert row["estimate_high_usd"] == 0.0144 and row["budget_usd"] == 2.0, row

    cleared = run_cli("cost", "limit", "clear", "--provider", "scripted", url=url)
    assert cleared.stdout.strip() == "Removed the spending limit on scripted jobs.", cleared.describe()
    run_cli("cost", "limit", "clear", url=url)
    assert "No spending limit is set" in run_cli("cost", "show", url=url).stdout
