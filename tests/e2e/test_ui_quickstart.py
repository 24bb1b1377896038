"""The seeds' quick start in the browser: from `cloudtuner server` to a completed job, using only the UI.

A real server with no Replicate token and the fake Replicate as a process. In the browser: the
empty job list's getting-started steps; Settings → paste the token → Save → Validate (the account
shows) → the server's public URL (so a run can deliver back to it); Train in Cloud → Flux LoRA
preset → the dataloader pointed at a local dataset full of traps → the model delivered "Back to
this server" → Train in Cloud → the pre-submit dialog (upload summary with the excluded files,
consent, run name) → Submit → the job page follows the run live to Completed, with the log, the
loss chart and the cost; the Artifacts tab lists the delivered files, and its Download link
downloads the weights (the bytes' SHA-256 is the one the fake trainer uploaded); the job list
shows the job without a reload; the Metrics screen counts it. Screenshots of each screen, light
and dark, laptop and phone, go to test-artifacts/ui/.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser

from tests.e2e.delivery_support import by_path, wait_for_delivery
from tests.e2e.harness import ServerFactory
from tests.e2e.replicate_support import TOKEN, fake_process, fresh_fake, make_dataset, runs_for_job
from tests.e2e.ui_support import (
    PHONE,
    chromium_browser,
    expect,
    nav,
    new_page,
    replicate_server_without_token,
    screenshot,
    ui_built,
)
from tests.fakes.replicate import FakeProcess, FakeReplicateRemote

RUN_SECONDS = 60.0
WEIGHTS = "pytorch_lora_weights.safetensors"  # what the fake trainer delivers (tests/fakes/replicate/delivery.py)


@pytest.fixture(scope="module")
def fake_proc() -> Iterator[FakeProcess]:
    yield from fake_process()


@pytest.fixture
def fake(fake_proc: FakeProcess) -> Iterator[FakeReplicateRemote]:
    yield from fresh_fake(fake_proc, processing_seconds=4.0, log_steps=8)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    ui_built()
    with chromium_browser() as chromium:
        yield chromium


def test_quick_start_from_token_to_completed_job(
    browser: Browser, servers: ServerFactory, fake: FakeReplicateRemote, tmp_path: Path
) -> None:
    server = replicate_server_without_token(servers, fake)
    dataset = make_dataset(tmp_path)
    page, errors = new_page(browser, server)

    # 1. The Cloud tab, empty: what to do first.
    page.goto("/")
    expect(page.get_by_role("heading", name="Jobs")).to_be_visible()
    expect(page.get_by_role("heading", name="Train your first model in the cloud")).to_be_visible()
    expect(page.get_by_text("Live", exact=True)).to_be_visible()
    screenshot(page, "01-jobs-empty")

    # 2. Settings: the token, then Validate.
    nav(page, "Settings").click()
    expect(page.get_by_role("heading", name="Settings", level=1)).to_be_visible()
    expect(page.get_by_test_id("token-status-replicate")).to_have_text("not set")
    replicate = page.get_by_role("region", name="Replicate")
    replicate.get_by_label("Replicate API token").fill(TOKEN)
    replicate.get_by_role("button", name="Save token").click()
    expect(page.get_by_test_id("token-status-replicate")).to_contain_text("saved on this server")
    expect(replicate.get_by_text("The token works")).to_be_visible()
    expect(replicate.get_by_test_id("account")).to_contain_text("cloudtuner-test")
    replicate.get_by_role("button", name="Validate").click()
    expect(replicate.get_by_test_id("account")).to_contain_text("cloudtuner-test")
    assert TOKEN not in page.content()  # the token is never shown back
    # The public URL: runs deliver their outputs back to this server (the built-in S3 endpoint).
    delivery = page.get_by_role("region", name="Delivery and uploads")
    delivery.get_by_label("Webhook URL (public URL of this server)").fill(server.url)
    delivery.get_by_role("button", name="Save").click()
    expect(delivery.get_by_text("Saved.")).to_be_visible()
    screenshot(page, "02-settings")

    # 3. Train in Cloud: a Flux LoRA from the preset, the dataset on this machine.
    nav(page, "Train in Cloud").click()
    page.get_by_role("button", name="Flux LoRA").click()
    page.get_by_label("Config name").fill("my-flux-lora")
    expect(page.get_by_label("Model family")).to_have_value("flux")
    page.get_by_role("tab", name="Training").click()
    page.get_by_label("Training steps").fill("1000")
    page.get_by_label("Learning rate", exact=True).fill("0.5")
    expect(page.get_by_text("Above 0.01 training usually diverges")).to_be_visible()
    page.get_by_label("Learning rate", exact=True).fill("1e-4")
    page.get_by_role("tab", name="Dataloader").click()
    page.get_by_role("button", name="Train in Cloud").last.click()  # the folder is missing: refused
    expect(page.get_by_text("Fix the fields marked in red first.")).to_be_visible()
    page.get_by_label("Image folder").fill(str(dataset.folder))
    screenshot(page, "03-train-dataloader")
    page.get_by_role("tab", name="Publishing").click()
    page.get_by_role("radio", name=re.compile("Back to this server")).check()
    screenshot(page, "04-train-publishing")

    # 4. The pre-submit dialog.
    page.get_by_role("button", name="Train in Cloud").last.click()
    dialog = page.get_by_role("dialog", name="Train in Cloud")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_text("training-images")).to_be_visible()
    excluded = dialog.locator(".excluded-table")
    expect(excluded).to_contain_text(".env")
    expect(excluded).to_contain_text("linked.jpg")
    submit = dialog.get_by_role("button", name="Submit")
    expect(submit).to_be_disabled()  # consent first
    dialog.get_by_label("Run name (optional)").fill("ui-first-run")
    dialog.get_by_label(re.compile("I agree to upload these files")).check()
    screenshot(page, "05-submit-dialog")
    expect(submit).to_be_enabled()
    submit.click()

    # 5. The job page follows the run to the end.
    expect(page).to_have_url(re.compile(r"#/jobs/[0-9a-zA-Z]{26}"))
    job_id = page.url.rsplit("/", 1)[-1]
    expect(page.get_by_role("heading", name="ui-first-run")).to_be_visible()
    expect(page.locator(".job-meta [data-status]")).to_have_attribute(
        "data-status", "running", timeout=RUN_SECONDS * 1000
    )
    screenshot(page, "06-job-running")
    expect(page.locator(".job-meta [data-status]")).to_have_attribute(
        "data-status", "completed", timeout=RUN_SECONDS * 1000
    )
    expect(page.get_by_test_id("job-cost")).not_to_have_text("$0.00")
    expect(page.get_by_role("img", name=re.compile(r"^Loss: \d+ points"))).to_be_visible()
    expect(page.locator(".chart-host canvas").first).to_be_visible()
    expect(page.locator(".timeline")).to_contain_text("Completed")
    screenshot(page, "07-job-completed")
    page.get_by_role("button", name="View Logs").click()
    log_box = page.get_by_test_id("log-box")
    expect(log_box).to_contain_text("Training complete", timeout=15_000)
    page.get_by_label("Search the log").fill("step_loss")
    expect(page.get_by_text(re.compile(r"^\d+ matching lines?$"))).to_be_visible()
    screenshot(page, "08-job-logs")
    page.get_by_role("tab", name="Config & data").click()
    expect(page.get_by_role("tabpanel")).to_contain_text("my-flux-lora")
    expect(page.get_by_role("tabpanel")).to_contain_text("--max_train_steps")
    screenshot(page, "09-job-config")
    # The delivered model: listed in the Artifacts tab, and its Download link downloads it.
    page.get_by_role("tab", name="Artifacts").click()
    panel = page.get_by_role("tabpanel")
    expect(panel.locator("p", has_text=f"Delivered to s3://cloudtuner/jobs/{job_id}/")).to_be_visible(timeout=30_000)
    row = panel.locator("tr", has=page.get_by_text(WEIGHTS, exact=True))
    expect(row).to_contain_text("Weights")
    expect(row).to_contain_text("This server")
    reply = wait_for_delivery(server, job_id)
    listed = by_path(reply)
    (run,) = runs_for_job(fake, job_id)
    assert set(fake.run(run["id"])["delivered"]) <= set(listed), (fake.run(run["id"]), listed)
    for path in listed:
        expect(panel.locator("tr", has=page.get_by_text(path, exact=True))).to_be_visible()
    weights = listed[WEIGHTS]
    expect(row).to_contain_text(weights["sha256"][:12])
    screenshot(page, "10-job-artifacts")
    link = row.get_by_role("link", name=f"Download {WEIGHTS}")
    assert link.get_attribute("href") == weights["download_url"], weights
    with page.expect_download() as download_info:
        link.click()
    download = download_info.value
    assert download.suggested_filename == WEIGHTS
    body = Path(download.path()).read_bytes()
    assert len(body) == weights["size_bytes"] and hashlib.sha256(body).hexdigest() == weights["sha256"], weights
    # The same URL from the page (its session), and by range (a resumed download).
    fetched = page.evaluate(
        """async (url) => {
            const whole = await fetch(url);
            const part = await fetch(url, {headers: {Range: "bytes=0-9"}});
            return {status: whole.status, size: (await whole.arrayBuffer()).byteLength,
                    partStatus: part.status, partSize: (await part.arrayBuffer()).byteLength,
                    contentRange: part.headers.get("content-range")};
        }""",
        weights["download_url"],
    )
    assert fetched == {
        "status": 200,
        "size": weights["size_bytes"],
        "partStatus": 206,
        "partSize": 10,
        "contentRange": f"bytes 0-9/{weights['size_bytes']}",
    }, fetched

    # The job as the API reports it is the one the page showed.
    job = server.job(job_id)
    assert job["status"] == "completed" and job["tracker_run_name"] == "ui-first-run", job
    assert job["config_snapshot"]["name"] == "my-flux-lora" and job["config_snapshot"]["commit"], job

    # 6. The job list: the finished job, its cost; other screens, light and dark, laptop and phone.
    nav(page, "Cloud").click()
    row = page.locator(f'tr[data-job-id="{job_id}"]')
    expect(row).to_contain_text("Completed")
    expect(row).to_contain_text("ui-first-run")
    screenshot(page, "11-jobs-list")
    nav(page, "Metrics").click()
    expect(page.get_by_role("heading", name="Metrics")).to_be_visible()
    expect(page.get_by_role("heading", name="Jobs by state")).to_be_visible()
    expect(page.get_by_test_id("success-rate")).to_have_text("100%")
    expect(page.get_by_test_id("queue-depth")).to_have_text("0")
    spend = page.get_by_role("region", name="Spend over time")
    expect(spend.get_by_role("img", name=re.compile(r"^Spend per day: 30 points"))).to_be_visible()
    spend.get_by_role("button", name="Per provider").click()
    expect(
        spend.get_by_role("img", name=re.compile(r"^Spend per provider, per day: 30 points, latest replicate"))
    ).to_be_visible()
    spend.get_by_role("button", name="Per hardware").click()
    expect(
        spend.get_by_role("img", name=re.compile(r"^Spend per hardware, per [\d.]+ days: 15 points, latest \S+ \$"))
    ).to_be_visible()
    screenshot(page, "12-metrics")
    errors.check()
    page.context.close()

    dark, dark_errors = new_page(browser, server, dark=True)
    dark.goto("/")
    expect(dark.locator(f'tr[data-job-id="{job_id}"]')).to_be_visible()
    screenshot(dark, "13-jobs-dark")
    dark.goto(f"/#/jobs/{job_id}")
    expect(dark.locator(".chart-host canvas").first).to_be_visible()
    screenshot(dark, "14-job-dark")
    dark_errors.check()
    dark.context.close()

    phone, phone_errors = new_page(browser, server, viewport=PHONE)
    phone.goto("/")
    expect(phone.locator(f'tr[data-job-id="{job_id}"]')).to_be_visible()
    screenshot(phone, "15-jobs-phone")
    phone.goto(f"/#/jobs/{job_id}")
    expect(phone.get_by_role("heading", name="ui-first-run")).to_be_visible()
    screenshot(phone, "16-job-phone")
    phone.goto("/#/settings")
    expect(phone.get_by_role("heading", name="Settings", level=1)).to_be_visible()
    screenshot(phone, "17-settings-phone")
    phone_errors.check()
    phone.context.close()
