"""Helpers of the browser tests: headless Chromium driven by Playwright, against real servers.

The browser is Debian's ``chromium`` (``/usr/bin/chromium``, installed by ``./dev test``), never a
browser downloaded by Playwright. It runs headless with no network of its own
(``--disable-background-networking``) and only ever opens pages of a test's own server on
127.0.0.1. Every page fails its test on an uncaught script error. Screenshots of each screen go to
``test-artifacts/ui/`` (git-ignored).

The UI must have been built (``./dev setup`` does it); a missing build fails the tests with the
command to run, rather than skipping them.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Locator, Page, Playwright, expect, sync_playwright

from cloudtuner.web import index_file
from tests.e2e.harness import REPO_ROOT, ServerFactory, ServerProcess
from tests.e2e.replicate_support import TOKEN
from tests.fakes.replicate import FakeReplicateRemote

__all__ = [
    "ARTIFACTS",
    "CHROMIUM",
    "PageErrors",
    "chromium_browser",
    "expect",
    "nav",
    "new_page",
    "replicate_server_without_token",
    "screenshot",
    "ui_built",
]

CHROMIUM = Path(os.environ.get("CLOUDTUNER_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ARTIFACTS = REPO_ROOT / "test-artifacts" / "ui"
LAPTOP = {"width": 1366, "height": 860}
PHONE = {"width": 390, "height": 844}


def ui_built() -> None:
    """Fail the test with the command to run when the web UI was not built."""
    if index_file() is None:
        pytest.fail("the web UI is not built: run ./dev setup (it runs npm ci && npm run build in web/)")


@contextmanager
def chromium_browser() -> Iterator[Browser]:
    """Yield headless Chromium (Debian's), closed at the end."""
    if not CHROMIUM.exists() and shutil.which("chromium") is None:
        pytest.fail("chromium is not installed: ./dev test installs it (apt-get install chromium)")
    executable = str(CHROMIUM) if CHROMIUM.exists() else str(shutil.which("chromium"))
    with sync_playwright() as playwright:
        browser = _launch(playwright, executable)
        try:
            yield browser
        finally:
            browser.close()


def _launch(playwright: Playwright, executable: str) -> Browser:
    return playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)


class PageErrors:
    """Script errors and failed requests a page saw; failed API probes (404) are expected."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.console: list[str] = []

    def on_error(self, error: Exception) -> None:
        self.errors.append(str(error))

    def on_console(self, message: ConsoleMessage) -> None:
        self.console.append(f"{message.type}: {message.text}")

    def check(self) -> None:
        assert not self.errors, "uncaught script errors:\n" + "\n".join(self.errors)


def new_page(
    browser: Browser, server: ServerProcess, *, viewport: dict[str, int] | None = None, dark: bool = False
) -> tuple[Page, PageErrors]:
    """Open a page of ``server`` in a new context (its own cookies); return it and its error log."""
    context = browser.new_context(
        viewport=viewport or LAPTOP,  # type: ignore[arg-type]
        color_scheme="dark" if dark else "light",
        base_url=server.url,
        service_workers="block",
    )
    context.set_default_timeout(15_000)
    page = context.new_page()
    errors = PageErrors()
    page.on("pageerror", errors.on_error)
    page.on("console", errors.on_console)
    return page, errors


def nav(page: Page, name: str) -> Locator:
    """Return the main navigation's link called ``name``."""
    return page.get_by_role("navigation", name="Main").get_by_role("link", name=name, exact=True)


def screenshot(page: Page, name: str, *, full_page: bool = True) -> Path:
    """Save a screenshot as ``test-artifacts/ui/<name>.png``; return its path."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


def replicate_server_without_token(
    servers: ServerFactory, fake: FakeReplicateRemote, *, name: str = "server", **env: Any
) -> ServerProcess:
    """Start a server pointed at the fake Replicate with no token: the user enters it in the UI."""
    server = servers.create(
        name,
        env={
            "CLOUDTUNER_REPLICATE_API_URL": fake.base_url,
            "CLOUDTUNER_RECONCILE_INTERVAL_SECONDS": "0.3",
            **{key: str(value) for key, value in env.items()},
        },
    )
    server.extra_env.pop("REPLICATE_API_TOKEN", None)
    return server.start()


def submit_replicate_job(server: ServerProcess, body: dict[str, Any]) -> str:
    """Submit a job to Replicate over HTTP with the fake's token saved first; return its id."""
    with server.http() as http:
        http.put("/api/cloud/providers/replicate/token", json={"token": TOKEN}).raise_for_status()
        reply = http.post("/api/cloud/jobs/submit", params={"provider": "replicate"}, json=body)
    assert reply.status_code == 202, reply.text
    job_id: str = reply.json()["job_id"]
    return job_id
