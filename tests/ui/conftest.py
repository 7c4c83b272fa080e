"""Browser tests of the dashboard: Playwright for Python driving Debian's chromium (no browser download).
Screenshots of each page go to ``$LOOMIQ_TEST_ARTIFACTS`` (default ``test-artifacts/ui`` in the repository)."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("LOOMIQ_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(os.environ.get("LOOMIQ_TEST_ARTIFACTS") or Path(__file__).parents[2] / "test-artifacts" / "ui")


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is required in CI (scripts/test.sh installs Debian's chromium package)")
        pytest.skip("no chromium on PATH (apt-get install chromium)")
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            yield b
        finally:
            await b.close()


class Page:
    """A browser page that records JavaScript errors and failed requests (every test asserts there are none)."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.errors: list[str] = []
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        page.on("console", lambda msg: self.errors.append(f"console: {msg.text}") if msg.type == "error" else None)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.page, name)

    async def shot(self, name: str) -> None:
        await self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


@pytest.fixture
async def new_page(browser: Any) -> AsyncIterator[Any]:
    pages: list[Page] = []

    await asyncio.to_thread(ARTIFACTS.mkdir, parents=True, exist_ok=True)

    async def make() -> Page:
        context = await browser.new_context(viewport={"width": 1280, "height": 900})
        page = Page(await context.new_page())
        pages.append(page)
        return page

    yield make
    for p in pages:
        await p.page.context.close()
