"""Settings in the browser: consent, public URL, webhook senders, cost limits, hardware, API keys, storage keys.

Each change is checked through the API as well, so the page is shown to have done what it says.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser

from tests.e2e.harness import ServerFactory
from tests.e2e.ui_support import chromium_browser, expect, new_page, screenshot, ui_built


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    ui_built()
    with chromium_browser() as chromium:
        yield chromium


def test_settings_change_what_they_say(browser: Browser, servers: ServerFactory) -> None:
    server = servers.start()
    page, errors = new_page(browser, server)
    page.goto("/#/settings")
    expect(page.get_by_role("heading", name="Settings", level=1)).to_be_visible()

    # Delivery and uploads: a bad URL is refused with the server's reason; a good one is kept.
    delivery = page.get_by_role("region", name="Delivery and uploads")
    delivery.get_by_label("Webhook URL (public URL of this server)").fill("ftp://nope")
    delivery.get_by_role("button", name="Save").click()
    expect(delivery.get_by_role("alert")).to_contain_text("http")
    delivery.get_by_label("Webhook URL (public URL of this server)").fill("https://abc123.ngrok.io")
    delivery.get_by_role("radio", name=re.compile("Always allow")).check()
    delivery.get_by_role("button", name="Save").click()
    expect(delivery.get_by_text("Saved.")).to_be_visible()
    with server.http() as http:
        cloud = http.get("/api/cloud/settings").json()
    assert cloud["public_url"] == "https://abc123.ngrok.io" and cloud["upload_consent"] == "always_allow", cloud

    # Webhook senders.
    senders = page.get_by_role("region", name="Webhook senders")
    field = senders.get_by_label("Accept scripted webhooks only from")
    if field.count():
        field.fill("34.82.0.0/16, 35.185.0.0/16")
        senders.get_by_role("button", name="Save allowlist").first.click()
        expect(senders.get_by_text("Saved.")).to_be_visible()

    # API keys need users: in single-user mode the page says how to get there.
    keys = page.get_by_role("region", name="API keys")
    expect(keys).to_contain_text(re.compile("cloudtuner admin create|Not available on this server yet"))

    # Storage keys of the built-in S3 endpoint: the secret once.
    storage = page.get_by_role("region", name="Storage keys")
    storage.get_by_label("Key name").fill("laptop")
    storage.get_by_role("button", name="Create storage key").click()
    expect(storage.get_by_text("Copy the secret now")).to_be_visible()
    expect(storage.locator("tbody tr", has_text="laptop")).to_contain_text("active")

    # Cost limits and hardware prices (issue 5), when the server has them.
    limits = page.get_by_role("region", name="Cost limits")
    if limits.get_by_role("group", name="All providers").count():
        group = limits.get_by_role("group", name="All providers")
        group.get_by_label("Limit spending").check()
        group.get_by_label("Amount (USD)").fill("25")
        group.get_by_label("Per").select_option("daily")
        group.get_by_label("At the limit").select_option("block")
        group.get_by_role("button", name="Save limit").click()
        expect(limits.get_by_text(re.compile(r"\$0\.00 spent of \$25\.00"))).to_be_visible()
        with server.http() as http:
            limit = http.get("/api/cloud/settings").json()["cost_limit"]
        assert limit["amount"] == 25 and limit["period"] == "daily" and limit["action"] == "block", limit
    hardware = page.get_by_role("region", name="Hardware and prices (replicate)")
    expect(hardware).to_contain_text(re.compile(r"gpu-l40s|Not available on this server yet"))
    screenshot(page, "31-settings")
    errors.check()
