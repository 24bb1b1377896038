"""Settings → Workers in the browser, against a real server: create a worker (its token and the
command that starts it shown once), see it come online when a worker registers with that token,
drain and resume it, give it a new token, delete it. Each step is checked through the API too.

The worker is played by this test over the worker protocol (``POST /api/worker/register`` with the
token the page showed), so the test needs no GPU and no worker process.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser

from tests.e2e.harness import ServerFactory, ServerProcess
from tests.e2e.ui_support import PHONE, chromium_browser, expect, new_page, screenshot, ui_built

GPU = {"name": "NVIDIA A100-SXM4-80GB", "memory_mb": 81920}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    ui_built()
    with chromium_browser() as chromium:
        yield chromium


def workers(server: ServerProcess) -> list[dict[str, Any]]:
    with server.http() as http:
        reply = http.get("/api/admin/workers")
    assert reply.status_code == 200, reply.text
    found: list[dict[str, Any]] = reply.json()["workers"]
    return found


def register(server: ServerProcess, token: str) -> httpx.Response:
    """Register as the worker that holds ``token`` (what `cloudtuner worker` does when it starts)."""
    with server.http() as http:
        return http.post(
            "/api/worker/register",
            headers={"Authorization": f"Bearer {token}"},
            json={"gpus": [GPU], "labels": {}, "hostname": "lab-gpu-1", "persistent": True},
        )


def test_create_drain_rotate_and_delete_a_worker(browser: Browser, servers: ServerFactory) -> None:
    server = servers.start()
    page, errors = new_page(browser, server)
    page.goto("/#/settings")
    section = page.get_by_role("region", name="Workers")
    expect(section.get_by_text("No worker yet.")).to_be_visible()

    # Create: a name the API refuses is caught in the form; then a good one, with labels.
    section.get_by_label("Worker name").fill("gpu box")
    expect(section.get_by_text("Letters, digits, dots, dashes and underscores only.")).to_be_visible()
    expect(section.get_by_role("button", name="Create worker")).to_be_disabled()
    section.get_by_label("Worker name").fill("gpu-box-1")
    section.get_by_label("Labels").fill("gpu=a100 site=lab")
    section.get_by_role("button", name="Create worker").click()

    # The token and the command, this once.
    command = section.get_by_test_id("worker-command")
    expect(command).to_contain_text(f"cloudtuner worker --orchestrator-url {server.url} --worker-token ctw_")
    token = section.get_by_test_id("worker-token").inner_text().strip()
    assert token.startswith("ctw_"), token
    # The labels live on the server; the command needs only the URL and the token.
    assert command.inner_text().strip() == f"cloudtuner worker --orchestrator-url {server.url} --worker-token {token}"
    (listed,) = workers(server)
    assert listed["name"] == "gpu-box-1" and listed["labels"] == {"gpu": "a100", "site": "lab"}, listed
    assert listed["status"] == "connecting", listed
    row = section.locator(f'tr[data-worker-id="{listed["worker_id"]}"]')
    expect(row).to_contain_text("Connecting")
    expect(row).to_contain_text("gpu=a100 site=lab")
    expect(row).to_contain_text("never")
    screenshot(page, "41-workers-created")
    section.get_by_role("button", name="Done").click()
    expect(section.get_by_test_id("worker-token")).to_have_count(0)
    page.reload()
    expect(row).to_contain_text("Connecting")
    assert token not in page.content()  # never shown again

    # The token the page showed works: the worker registers and the list follows (it polls).
    assert register(server, token).status_code == 200
    expect(row.locator("[data-status]")).to_have_attribute("data-status", "idle", timeout=15_000)
    expect(row).to_contain_text("NVIDIA A100-SXM4-80GB (80 GB)")
    expect(row).to_contain_text("on lab-gpu-1")
    expect(row).to_contain_text("just now")
    screenshot(page, "42-workers-idle")

    # Drain, then resume.
    row.get_by_role("button", name="Drain gpu-box-1").click()
    expect(row.locator("[data-status]")).to_have_attribute("data-status", "draining")
    assert workers(server)[0]["status"] == "draining"
    screenshot(page, "43-workers-draining")
    row.get_by_role("button", name="Resume gpu-box-1").click()
    expect(row.locator("[data-status]")).to_have_attribute("data-status", "idle")
    assert workers(server)[0]["status"] == "idle"

    # A new token: shown once; the old one stops working.
    row.get_by_role("button", name="New token for gpu-box-1").click()
    expect(section.get_by_text(re.compile("New token for gpu-box-1"))).to_be_visible()
    new_token = section.get_by_test_id("worker-token").inner_text().strip()
    assert new_token.startswith("ctw_") and new_token != token
    expect(section.get_by_test_id("worker-command")).to_contain_text(new_token)
    assert register(server, token).status_code == 401
    assert register(server, new_token).status_code == 200

    # Delete, after a confirmation.
    row.get_by_role("button", name="Delete gpu-box-1").click()
    dialog = page.get_by_role("dialog", name="Delete this worker?")
    expect(dialog).to_contain_text("gpu-box-1 will be deleted")
    screenshot(page, "44-workers-delete", full_page=False)
    dialog.get_by_role("button", name="Delete worker").click()
    expect(dialog).to_be_hidden()
    expect(row).to_have_count(0)
    expect(section.get_by_test_id("worker-token")).to_have_count(0)
    expect(section.get_by_text("No worker yet.")).to_be_visible()
    assert workers(server) == []
    assert register(server, new_token).status_code == 401
    errors.check()
    page.context.close()

    # On a phone, the list becomes cards.
    with server.http() as http:
        created = http.post("/api/admin/workers", json={"name": "phone-box", "labels": {"gpu": "l40s"}})
    assert created.status_code == 201, created.text
    phone, phone_errors = new_page(browser, server, viewport=PHONE)
    phone.goto("/#/settings")
    phone_row = phone.get_by_role("region", name="Workers").locator("tr", has_text="phone-box")
    expect(phone_row).to_contain_text("Connecting")
    phone_row.scroll_into_view_if_needed()
    screenshot(phone, "45-workers-phone", full_page=False)
    phone_errors.check()
    phone.context.close()
