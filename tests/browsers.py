"""Debian's Chromium driven by Playwright: one way for every browser test to find, start and sign in
(never a downloaded browser; scripts/system-deps.sh installs Debian's)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("FACELEDGER_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
HAVE_CHROMIUM = Path(CHROMIUM).is_file() or shutil.which("chromium") is not None
needs_chromium = pytest.mark.skipif(
    not HAVE_CHROMIUM, reason=f"Chromium is not installed at {CHROMIUM} (scripts/system-deps.sh installs it)")


def launch(playwright, extra_args: tuple[str, ...] | list[str] = ()):
    """A headless Chromium from a running Playwright."""
    executable = CHROMIUM if Path(CHROMIUM).is_file() else shutil.which("chromium")
    return playwright.chromium.launch(executable_path=executable, args=[*ARGS, *extra_args], headless=True)


@contextmanager
def chromium(extra_args: tuple[str, ...] | list[str] = ()) -> Iterator:
    """Playwright and one Chromium, closed after the block."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = launch(playwright, extra_args)
        try:
            yield browser
        finally:
            browser.close()


def sign_in(page, base: str, token: str) -> None:
    page.goto(base + "/")
    assert "/login" in page.url
    page.fill("input[name=token]", token)
    page.click("button[type=submit]")
    page.wait_for_load_state()
    assert "/login" not in page.url
