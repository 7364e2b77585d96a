"""Open a report in headless Chromium: check that it renders, and take a screenshot.

Uses the ``chromium`` binary directly (Debian packages ``chromium`` and ``chromium-driver``); the page's own
self-check script reports how many figures decoded and whether anything logged an error.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from distillkit.registry import DistillkitError

__all__ = ["find_chromium", "render_report"]

# Flags for a sandboxed, offline machine: no background connections, no GPU, a fresh profile.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--virtual-time-budget=10000"]


def find_chromium() -> str | None:
    """Path of a Chromium (or Chrome) binary, or ``None``."""
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def render_report(html_path: str | Path, *, screenshot: str | Path | None = None, width: int = 1400,
                  height: int = 3300, timeout: float = 120) -> dict[str, int]:
    """Load ``html_path`` in headless Chromium and return the page's self-check.

    Returns:
        ``{"figures": n, "broken": n, "errors": n}`` as the page counted them after loading.

    Raises:
        DistillkitError: no Chromium is installed, or the page never reported its status.
    """
    binary = find_chromium()
    if binary is None:
        raise DistillkitError("no Chromium found: apt-get install chromium chromium-driver")
    url = Path(html_path).resolve().as_uri()
    with tempfile.TemporaryDirectory() as profile:
        base = [binary, *FLAGS, f"--user-data-dir={profile}"]
        dom = subprocess.run([*base, "--dump-dom", url], capture_output=True, text=True, timeout=timeout).stdout
        if screenshot is not None:
            Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
            subprocess.run([*base, f"--window-size={width},{height}", f"--screenshot={Path(screenshot).resolve()}",
                            url], capture_output=True, text=True, timeout=timeout, check=True)
    match = re.search(r'id="status" data-figures="(\d+)" data-broken="(\d+)" data-errors="(\d+)"', dom)
    if match is None:
        raise DistillkitError(f"{html_path}: the page did not finish loading in Chromium")
    figures, broken, errors = (int(g) for g in match.groups())
    return {"figures": figures, "broken": broken, "errors": errors}
