"""Fixtures of the browser tests: Chromium (Debian's package), a JupyterLab server, a page.

Without Chromium the tests say how to install it; under CI (``CI=true``)
they fail instead of skipping, so a CI machine without it cannot pass green.
Screenshots go to ``$EVENTSTORE_BROWSER_ARTIFACTS`` (default
``tmp/artifacts/browser`` in the checkout); with ``EVENTSTORE_DOCS_SCREENSHOTS=1``
they are also written to ``docs/images/``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .lab import INSTALL_HINT, ROOT, JupyterLabServer, LabPage, find_chromium


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def chromium() -> str:
    path = find_chromium()
    if path is None:
        if _in_ci():
            pytest.fail(f"no Chromium found. {INSTALL_HINT}")
        pytest.skip(f"no Chromium found. {INSTALL_HINT}")
    return path


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[Any]:
    """Chromium, for one test module: Playwright's sync API keeps an event loop running
    in this thread while it is open, and later tests of the suite call asyncio.run()."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:  # the dev extra has it
        pytest.fail(f"playwright is missing ({exc}); install the dev extra: pip install -e .[dev]")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=chromium,
            headless=True,
            # The machine's network is closed: background fetches would only fail, many at a time.
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def lab_server(artifacts: Path) -> Iterator[JupyterLabServer]:
    with tempfile.TemporaryDirectory(prefix="eventstore-lab-") as base:
        server = JupyterLabServer(Path(base))
        server.start()
        try:
            yield server
        finally:
            server.stop()
            if server.log.exists():  # the server's and its kernels' messages, for a failure
                shutil.copy2(server.log, artifacts / "jupyterlab.log")


@pytest.fixture
def lab(browser: Any, lab_server: JupyterLabServer) -> Iterator[LabPage]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        yield LabPage(page, lab_server)
    finally:
        context.close()
        lab_server.end_sessions()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    folder = Path(
        os.environ.get("EVENTSTORE_BROWSER_ARTIFACTS", ROOT / "tmp" / "artifacts" / "browser")
    )
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def docs_screenshots() -> Path | None:
    """``docs/images/`` when EVENTSTORE_DOCS_SCREENSHOTS=1 asks for the screenshots there."""
    if os.environ.get("EVENTSTORE_DOCS_SCREENSHOTS", "") in ("1", "true", "yes"):
        return ROOT / "docs" / "images"
    return None
