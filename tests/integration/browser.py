"""A real headless browser for the console's tests: Debian's chromium driven by Playwright.

Playwright's own browser builds are never downloaded (``playwright install`` is not run):
the fixtures launch the distribution's ``/usr/bin/chromium`` (``make system-deps`` installs
it), headless, with a fresh profile per session and a fresh context (cookies, storage)
per test. If chromium is missing or does not start, the fixture fails and says why.

- ``browser`` (:func:`browser_fixture`): the browser, one per test session;
- ``page`` (:func:`page_fixture`): a page in a new context, 1280x900, for one test.

A test module imports both: ``from tests.integration.browser import browser_fixture,
page_fixture``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, ViewportSize, async_playwright

#: Debian's chromium (package ``chromium``; ``chromium-driver`` brings chromedriver)
CHROMIUM = Path("/usr/bin/chromium")

#: no sandbox (tests may run as root), and nothing that reaches outside 127.0.0.1
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)

VIEWPORT: ViewportSize = {"width": 1280, "height": 900}

#: how long one Playwright wait (a click, a locator's expectation) may take, in ms
WAIT_MS = 10_000

#: seconds each browser launch took (the tests report it)
launch_s: list[float] = []


@pytest.fixture(scope="session", name="browser")
async def browser_fixture() -> AsyncIterator[Browser]:
    """Debian's chromium, headless, with a temporary profile Playwright removes after."""
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: run `make system-deps` (Debian's chromium)")
    async with async_playwright() as playwright:
        started = time.monotonic()
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=list(CHROMIUM_ARGS), headless=True, timeout=30_000
        )
        launch_s.append(time.monotonic() - started)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture(name="page")
async def page_fixture(browser: Browser) -> AsyncIterator[Page]:
    """A page in a context of its own (no cookie of another test), 1280x900."""
    context = await browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(WAIT_MS)
    try:
        yield await context.new_page()
    finally:
        await context.close()
