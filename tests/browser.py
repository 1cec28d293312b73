"""Headless Chromium for the page tests: load a file, return the DOM after its script ran.

Each run gets a fresh profile (safe beside other xdist workers), has the network off
(every host unresolvable, a proxy nobody listens on), is bounded by a timeout, and runs
in its own session, which is killed and checked empty through /proc afterwards.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--proxy-server=127.0.0.1:9",
    "--enable-logging=stderr",
    "--v=0",
]
CONSOLE = re.compile(r":CONSOLE(?:\(\d+\))?:?\d*\] (.*)")


def chromium() -> str:
    """The Chromium to test with; skips, saying why, where there is none."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip(
        "no Chromium on PATH (Debian: apt-get install chromium; .ci/run installs it): "
        "the page's browser tests cannot run here"
    )


@dataclass
class Loaded:
    dom: str
    console: list[str]  # what the page's console said (errors included)
    seconds: float


def load(page: Path, screenshot: Path, fragment: str = "", timeout: float = 60) -> Loaded:
    """Open ``page`` from file:// in headless Chromium; the DOM once its script ran."""
    binary = chromium()
    with tempfile.TemporaryDirectory(prefix="ctlwire-chromium-") as profile:
        argv = [
            binary,
            *FLAGS,
            f"--user-data-dir={profile}",
            "--window-size=1400,1000",
            f"--screenshot={screenshot}",
            "--dump-dom",
            page.resolve().as_uri() + fragment,
        ]
        started = time.monotonic()
        child = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            out, err = child.communicate(timeout=timeout)
        finally:
            _end_session(child)
        seconds = time.monotonic() - started
    assert child.returncode == 0, f"chromium exited {child.returncode}: {err.decode()[-2000:]}"
    console = [m.group(1) for m in CONSOLE.finditer(err.decode(errors="replace"))]
    return Loaded(out.decode(), console, seconds)


def _end_session(child: subprocess.Popen[bytes]) -> None:
    """Kill whatever is left of Chromium's session; wait until /proc shows none of it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGKILL)
    child.wait(timeout=10)
    deadline = time.monotonic() + 10
    while left := _session_members(child.pid):
        assert time.monotonic() < deadline, f"chromium processes left behind: {left}"
        time.sleep(0.05)


def _session_members(sid: int) -> list[int]:
    """Live processes of session ``sid`` (zombies count as gone), read from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z" and int(fields[3]) == sid:
            found.append(int(entry.name))
    return found
