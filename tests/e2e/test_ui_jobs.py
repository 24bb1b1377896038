"""The job list and job page in the browser: live updates, filters, search, paging, cancel, delete.

Live updates come from the server-sent events of ``GET /api/cloud/events``, which read the job
store; the two-server test shows a page on one server process following jobs that another
process, sharing the database, accepted and ran.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page

from tests.e2e.harness import ServerFactory, ServerProcess, inline_job
from tests.e2e.replicate_support import fake_process, fresh_fake, make_dataset, seed_body
from tests.e2e.ui_support import (
    PageErrors,
    chromium_browser,
    expect,
    new_page,
    replicate_server_without_token,
    screenshot,
    submit_replicate_job,
    ui_built,
)
from tests.fakes.replicate import FakeProcess, FakeReplicateRemote

STATUS = ".job-meta [data-status]"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    ui_built()
    with chromium_browser() as chromium:
        yield chromium


@pytest.fixture(scope="module")
def fake_proc() -> Iterator[FakeProcess]:
    yield from fake_process()


@pytest.fixture
def fake(fake_proc: FakeProcess) -> Iterator[FakeReplicateRemote]:
    yield from fresh_fake(fake_proc, processing_seconds=120.0, log_steps=40)


def test_list_updates_live_filters_searches_and_pages(browser: Browser, servers: ServerFactory) -> None:
    server = servers.start()
    old = [
        server.submit(inline_job(**{"--scripted_seconds": 0.1}) | {"tracker_run_name": f"old-{i}"}) for i in range(55)
    ]
    for job_id in (old[0], old[-1]):
        server.wait_for_status(job_id, "completed")
    page, errors = new_page(browser, server)
    page.goto("/")
    expect(page.locator("tr.job-row")).to_have_count(50)
    expect(page.get_by_text("Live", exact=True)).to_be_visible()

    # A job submitted elsewhere (here: over HTTP) appears and moves to Completed without a reload.
    slow = server.submit(inline_job(**{"--scripted_seconds": 2.0}) | {"tracker_run_name": "live-one"})
    row = page.locator(f'tr[data-job-id="{slow}"]')
    expect(row).to_be_visible()
    expect(row).to_contain_text("Running", timeout=15_000)
    screenshot(page, "20-jobs-live-running")
    expect(row).to_contain_text("Completed", timeout=20_000)

    # Paging by cursor: 50 a page; the live job joined the first page.
    page.get_by_role("button", name="Older →").click()
    expect(page.locator("tr.job-row")).to_have_count(5)  # the page cursors were made before the live job came
    expect(page.locator(f'tr[data-job-id="{old[0]}"]')).to_be_visible()
    page.get_by_role("button", name="← Newer").click()
    expect(page.locator("tr.job-row")).to_have_count(50)

    # Filters and search (server-side, over every job).
    page.get_by_role("button", name="Failed", exact=True).click()
    expect(page.get_by_text("No job matches these filters.")).to_be_visible()
    page.get_by_role("button", name="All", exact=True).click()
    page.get_by_label("Search").fill("old-7")
    expect(page.locator("tr.job-row")).to_have_count(1)
    expect(page.locator("tr.job-row")).to_contain_text("old-7")
    page.get_by_label("Search").fill("live-one")
    expect(page.locator("tr.job-row")).to_contain_text("live-one")
    expect(page.locator("tr.job-row")).to_have_count(1)
    expect(page).to_have_url(re.compile(r"q=live-one"))
    page.reload()
    expect(page.get_by_label("Search")).to_have_value("live-one")
    expect(page.locator("tr.job-row")).to_have_count(1)
    errors.check()


def test_two_servers_one_database(browser: Browser, servers: ServerFactory, tmp_path: Path) -> None:
    database = f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
    first = servers.start("first", database_url=database)
    second = servers.start("second", database_url=database)
    page, errors = new_page(browser, first)
    page.goto("/")
    expect(page.get_by_text("Live", exact=True)).to_be_visible()
    job_id = second.submit(inline_job(**{"--scripted_seconds": 1.0}) | {"tracker_run_name": "from-the-other-server"})
    row = page.locator(f'tr[data-job-id="{job_id}"]')
    expect(row).to_contain_text("from-the-other-server")
    expect(row).to_contain_text("Completed", timeout=20_000)
    errors.check()


def _open_replicate_job(
    browser: Browser, servers: ServerFactory, fake: FakeReplicateRemote, tmp_path: Path, run_name: str
) -> tuple[ServerProcess, str, Page, PageErrors]:
    """Start a server on the fake, submit a job with a small local dataset, open its page."""
    server = replicate_server_without_token(servers, fake)
    dataset = make_dataset(tmp_path)
    job_id = submit_replicate_job(server, seed_body(dataset.folder, tracker_run_name=run_name))
    page, errors = new_page(browser, server)
    page.goto(f"/#/jobs/{job_id}")
    return server, job_id, page, errors


def test_cancel_then_delete_with_confirmation(
    browser: Browser, servers: ServerFactory, fake: FakeReplicateRemote, tmp_path: Path
) -> None:
    server, job_id, page, errors = _open_replicate_job(browser, servers, fake, tmp_path, "to-cancel")
    expect(page.locator(STATUS)).to_have_attribute("data-status", "running", timeout=30_000)
    expect(page.get_by_role("button", name="Delete")).to_have_count(0)  # only finished jobs

    # Live log tail and the charts while it runs.
    expect(page.get_by_role("img", name=re.compile(r"^Loss: \d+ points"))).to_be_visible(timeout=30_000)
    page.get_by_role("tab", name="Logs").click()
    expect(page.get_by_test_id("log-box")).to_contain_text("step_loss")
    page.get_by_role("tab", name="Overview").click()

    page.get_by_role("button", name="Cancel", exact=True).click()
    dialog = page.get_by_role("dialog", name="Cancel this job?")
    expect(dialog).to_be_visible()
    screenshot(page, "21-cancel-confirm")
    dialog.get_by_role("button", name="Keep it").click()
    expect(dialog).to_be_hidden()
    assert server.job(job_id)["status"] == "running"

    page.get_by_role("button", name="Cancel", exact=True).click()
    page.get_by_role("dialog", name="Cancel this job?").get_by_role("button", name="Cancel job").click()
    expect(page.locator(STATUS)).to_have_attribute("data-status", "cancelled", timeout=30_000)
    expect(page.locator(".timeline")).to_contain_text("Cancelled")
    assert server.job(job_id)["status"] == "cancelled"
    (run,) = [r for r in fake.runs() if f"job_id={job_id}" in (r.get("webhook") or "")] or fake.runs()
    assert fake.run(run["id"])["status"] == "canceled"

    page.get_by_role("button", name="Delete").click()
    page.get_by_role("dialog", name="Delete this job?").get_by_role("button", name="Delete job").click()
    expect(page.get_by_role("heading", name="Jobs")).to_be_visible()
    expect(page.locator(f'tr[data-job-id="{job_id}"]')).to_have_count(0)
    with server.http() as http:
        assert http.get(f"/api/cloud/jobs/{job_id}").status_code == 404
    errors.check()


def test_upload_progress_reads_in_bytes(
    browser: Browser, servers: ServerFactory, fake: FakeReplicateRemote, tmp_path: Path
) -> None:
    fake.add_fault(kind="delay", method="POST", path="/v1/files", seconds=60.0)  # the upload hangs
    _, _, page, errors = _open_replicate_job(browser, servers, fake, tmp_path, "uploading")
    expect(page.locator(STATUS)).to_have_attribute("data-status", "uploading", timeout=30_000)
    bar = page.get_by_role("progressbar", name="Upload progress")
    expect(bar).to_be_visible(timeout=30_000)
    expect(page.locator(".stats .progress-text")).to_have_text(
        re.compile(r"^uploading \d+(\.\d+)? (B|KiB)/\d+(\.\d+)? (B|KiB)"), timeout=30_000
    )
    # The bar's label names the stage: it is not repeated under it.
    expect(page.locator(".stat", has=bar).locator(".stat-hint")).to_have_count(0)
    screenshot(page, "22-upload-progress")
    errors.check()
