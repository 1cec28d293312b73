"""The page of ``ctlwire show --html`` for a big log: time to make it, its size, and the
time headless Chromium takes to open and draw it (the target: under 10 s, under 8 MiB)."""

from __future__ import annotations

import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from ctlwire.fixtures.log import read_log
from ctlwire.fixtures.records import write_log
from ctlwire.fixtures.show_html import session_page
from ctlwire.fixtures.synthetic import busy_session, synthetic_header

Figure = tuple[str, str, float, str]  # name, unit, value, target


def page_figures(frames: int, rounds: int) -> list[Figure]:
    with tempfile.TemporaryDirectory(prefix="ctlwire-bench-page-") as folder:
        log_path = write_log(Path(folder) / "busy.jsonl", busy_session(frames), synthetic_header())
        made = []
        for _ in range(rounds):
            started = time.perf_counter()
            page = session_page(read_log(log_path))
            made.append(time.perf_counter() - started)
        html = Path(folder) / "busy.html"
        html.write_text(page, encoding="utf-8")
        figures = [
            (f"page of {frames} frames: read + make", "s", statistics.median(made), "<10 s"),
            (f"page of {frames} frames: size", "MiB", html.stat().st_size / 2**20, "<8 MiB"),
        ]
        browser = shutil.which("chromium")
        if browser is not None:
            opened = [_open(browser, html, Path(folder)) for _ in range(rounds)]
            figures.append((f"page of {frames} frames: chromium opens + draws", "s",
                            statistics.median(opened), "<10 s"))  # fmt: skip
    return figures


def _open(browser: str, html: Path, folder: Path) -> float:
    """Seconds from starting headless Chromium to the DOM after the page's script ran."""
    with tempfile.TemporaryDirectory(dir=folder) as profile:
        argv = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", f"--user-data-dir={profile}",
                "--dump-dom", html.as_uri()]  # fmt: skip
        started = time.perf_counter()
        dom = subprocess.run(argv, capture_output=True, timeout=120, check=True).stdout
        seconds = time.perf_counter() - started
    if b'data-ready="1"' not in dom:
        raise RuntimeError("the page's script did not finish drawing")
    return seconds
