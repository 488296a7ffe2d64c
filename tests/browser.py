"""Open an HTML report in a real headless Chromium (Debian's ``chromium``) and report what it saw.

Two runs of the browser: ``--dump-dom`` (the DOM after scripts ran, and every console message,
which Chromium logs as ``:CONSOLE`` lines with ``--enable-logging=stderr``) and ``--screenshot`` of
the first screen (1280 by 900). Tests that need it are skipped, with the reason, only when no
chromium binary is installed (``.ci/run`` installs it).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

WIDTH, HEIGHT = 1280, 900
_CONSOLE = re.compile(r":CONSOLE[^\]]*\] (.*)")


def chromium() -> str:
    """The chromium binary, or skip the calling test saying why."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("no chromium binary found: install Debian's chromium (apt-get install chromium) to test the HTML")


@dataclass(frozen=True)
class Rendered:
    """What the browser made of a page."""

    dom: str
    console: list[str]
    screenshot: Path


def _run(args: list[str], profile: Path) -> subprocess.CompletedProcess[str]:
    command = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
               f"--user-data-dir={profile}", f"--window-size={WIDTH},{HEIGHT}", "--enable-logging=stderr", "--v=0",
               *args]
    # No proxy and no network: the page must not need any; a CSP in the page forbids it too.
    env = {**os.environ, "no_proxy": "*"}
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env, check=False)


def render(page: Path, screenshot: Path) -> Rendered:
    """Load ``page`` from disk in headless Chromium: DOM, console messages, first-screen screenshot."""
    url = Path(page).resolve().as_uri()
    with tempfile.TemporaryDirectory(prefix="repro-chromium-") as profile:
        dom = _run(["--dump-dom", url], Path(profile))
        shot = _run([f"--screenshot={screenshot}", url], Path(profile))
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert shot.returncode == 0 and screenshot.is_file(), shot.stderr[-2000:]
    console = [m.group(1) for m in _CONSOLE.finditer(dom.stderr + shot.stderr)]
    return Rendered(dom=dom.stdout, console=console, screenshot=screenshot)


def banner_in_first_screen(screenshot: Path, background: tuple[int, int, int]) -> bool:
    """Whether the verdict banner's background colour fills a band in the top of the first screen."""
    from PIL import Image

    with Image.open(screenshot) as image:
        rgb = image.convert("RGB")
        assert rgb.size == (WIDTH, HEIGHT)
        # The banner spans the page width just under the title: count its colour in the top 300 rows.
        hits = 0
        for x in range(0, WIDTH, 4):
            for y in range(0, 300, 4):
                pixel = rgb.getpixel((x, y))
                assert isinstance(pixel, tuple)
                hits += all(abs(a - b) <= 6 for a, b in zip(pixel, background, strict=True))
    return hits > 2000


TONE_BACKGROUND = {"good": (0xE8, 0xF5, 0xE9), "warn": (0xFF, 0xF3, 0xE0), "bad": (0xFF, 0xEB, 0xEE),
                   "unknown": (0xEC, 0xEF, 0xF1)}


def assert_verdict_first(rendered: Rendered, headline: str, tone: str) -> None:
    """No console message; the banner is the page's first section, says ``headline``, and is on screen."""
    assert rendered.console == [], rendered.console
    banner = re.search(r'<section class="banner (\w+)" id="verdict">\s*<p class="headline">([^<]*)</p>', rendered.dom)
    assert banner is not None, "no verdict banner in the rendered page"
    assert (banner.group(1), banner.group(2)) == (tone, headline)
    assert rendered.dom.index('id="verdict"') < rendered.dom.index("<h2"), "something comes before the verdict"
    assert banner_in_first_screen(rendered.screenshot, TONE_BACKGROUND[tone]), "the verdict is not in the first screen"
