"""Headless Debian Chromium for the browser tests, driven by Playwright (never a downloaded browser).

``browser_fixture(scope)`` makes the ``browser`` fixture: conftest defines the function-scoped one
every test module gets; a module without async tests may define its own with ``scope="module"``
(one launch for the module). Screenshots go to ``ARTIFACTS`` (``test-artifacts/browser/``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
ARTIFACTS = (
    Path(os.environ.get("ASSIST_TEST_ARTIFACTS", Path(__file__).parent.parent / "test-artifacts")) / "browser"
)


def browser_fixture(scope: Literal["function", "module"] = "function") -> Any:
    """A ``browser`` fixture (a launched Playwright Chromium) of this scope.

    Function scope is the default because Playwright's sync API keeps an event loop running in
    the thread while it is open, and async tests need the thread's loop free. Without Chromium the
    test is skipped, unless ``CI`` is set: there it fails."""

    @pytest.fixture(scope=scope, name="browser")
    def browser() -> Iterator[Any]:
        if not CHROMIUM.exists():
            if os.environ.get("CI"):
                pytest.fail("Debian chromium is not installed (apt-get install chromium)")
            pytest.skip("Debian chromium is not installed")
        from playwright.sync_api import sync_playwright

        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        with sync_playwright() as p:
            # Playwright gives every launch a fresh, throw-away profile (its own --user-data-dir)
            b = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS, headless=True)
            yield b
            b.close()

    return browser
