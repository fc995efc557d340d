"""Headless Chromium for the page tests (Debian's package, which `make test` installs)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ARTIFACTS = Path(os.environ.get("RAYJOBS_TEST_ARTIFACTS", Path(__file__).resolve().parent / "artifacts"))
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail("Chromium is not installed: `make test` installs Debian's chromium package")
    return found


def launch(playwright):
    return playwright.chromium.launch(executable_path=chromium(), headless=True, args=FLAGS)
