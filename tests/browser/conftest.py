"""A real browser for the UI tests: Debian's Chromium, headless, driven by Playwright.

No browser is downloaded: Playwright is pointed at the system Chromium (``make test``
installs the Debian package when it is missing). When the browser cannot start the tests
fail; they never skip.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import BrowserContext, Page, async_playwright

from postback.core import wire as s
from tests.support.payloads import ANY_OBJECT, TEST_EVENT_TYPES
from tests.support.service import RunningPostback

CHROMIUM = os.environ.get("POSTBACK_TEST_CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = os.environ.get("POSTBACK_SCREENSHOTS")
"""Set to a directory (docs/images) to save the README's screenshots while the tests run."""


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[BrowserContext]:
    """A fresh Chromium profile (its own --user-data-dir) per test."""
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=FLAGS,
            viewport={"width": 1280, "height": 860},
        )
        context.set_default_timeout(15_000)
        try:
            yield context
        finally:
            await context.close()


async def screenshot(page: Page, name: str) -> None:
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"), full_page=True)


async def customer(postback: RunningPostback, name: str) -> tuple[s.AccountCreated, str]:
    """A new account with the test event types, and its API key."""
    async with postback.client() as admin:
        account = await admin.create_account(name)
    async with postback.client(account.api_key) as setup:
        for event_type in TEST_EVENT_TYPES:
            await setup.create_event_type(event_type, ANY_OBJECT)
    return account, account.api_key
