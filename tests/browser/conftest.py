"""The browser tests' set-up: one ``tripquote serve`` (uvicorn on loopback) on a migrated
database of their own, its ``TRIPQUOTE_PUBLIC_BASE_URL`` its own address; Debian's Chromium
driven by Playwright (``/usr/bin/chromium``, nothing downloaded); a screenshot of the page of
each failed test in ``$TRIPQUOTE_TEST_ARTIFACTS`` (default ``test-artifacts/``), for CI to
keep."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.servers import (
    Database,
    Server,
    free_port,
    migrated_database,
    server_env,
    start_server,
    wait_ready,
)

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(os.environ.get("TRIPQUOTE_TEST_ARTIFACTS", "test-artifacts"))

pytestmark = pytest.mark.browser


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Without Chromium the browser tests are skipped (never under CI: it installs it)."""
    if CHROMIUM.exists() or os.environ.get("CI"):
        return
    for item in items:
        if "tests/browser" in str(item.fspath):
            item.add_marker(
                pytest.mark.skip(reason="no /usr/bin/chromium (apt-get install chromium)")
            )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Iterator[None]:
    """Each phase's report on the test item, so a fixture knows whether the test failed."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


@pytest_asyncio.fixture(scope="module")
async def database() -> AsyncIterator[Database]:
    """A database of this module's own, dropped after."""
    async with migrated_database("browser") as database:
        yield database


@pytest_asyncio.fixture(scope="module")
async def server(
    database: Database, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Server]:
    """``tripquote serve`` on a free loopback port, its links built on that address."""
    port = free_port()
    env = server_env(
        database.url, public_base_url=f"http://127.0.0.1:{port}", public_rate_limit="100000/minute"
    )
    server = start_server(env, log_dir=tmp_path_factory.mktemp("browser"), port=port)
    try:
        await wait_ready(server)
        yield server
    finally:
        server.stop()


@pytest_asyncio.fixture(scope="module")
async def browser() -> AsyncIterator[Any]:
    """Debian's Chromium, headless."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield launched
        finally:
            await launched.close()


@pytest_asyncio.fixture
async def page(browser: Any, request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """A fresh page (its own context); on failure its screenshot is kept in ARTIFACTS; any
    Content-Security-Policy violation it reports fails the test."""
    context = await browser.new_context(viewport={"width": 1024, "height": 800})
    opened = await context.new_page()
    violations: list[str] = []
    opened.on(
        "console",
        lambda message: (
            violations.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    try:
        yield opened
        assert not violations, violations
    finally:
        failed = getattr(request.node, "report_call", None)
        if failed is not None and failed.failed:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid)
            for index, each in enumerate(context.pages):
                await each.screenshot(path=str(ARTIFACTS / f"{name}-{index}.png"), full_page=True)
        await context.close()
