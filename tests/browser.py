"""Headless Chromium for the page tests: load a file, return the DOM after its script ran.

Each run gets a fresh profile (safe beside other xdist workers), has the network off
(every host unresolvable, a proxy nobody listens on), is bounded by a timeout, and runs
in its own session, which is killed and checked empty through /proc afterwards.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import select
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


def load(page: Path, screenshot: Path, fragment: str = "", timeout: float = 45) -> Loaded:
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
    """Live processes of session ``sid`` (zombies count as gone), read from /proc (none
    where there is no /proc: there the group kill has to do)."""
    found: list[int] = []
    proc = Path("/proc")
    for entry in proc.iterdir() if proc.is_dir() else ():
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


class DevTools:
    """Chromium driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``:
    commands on its fd 3, answers and events on its fd 4, each JSON ending in NUL), to
    click and drag on a page as a person would. Events are kept in ``events``."""

    def __init__(self, timeout: float = 45) -> None:
        self.deadline = time.monotonic() + timeout
        self.events: list[dict[str, Any]] = []
        self._profile = tempfile.TemporaryDirectory(prefix="ctlwire-chromium-")
        to_child, self._send_fd = os.pipe()
        self._read_fd, from_child = os.pipe()

        def wire() -> None:  # in the child: its fd 3 and 4 are the two pipe ends
            os.dup2(to_child, 3)
            os.dup2(from_child, 4)

        argv = [chromium(), *FLAGS, f"--user-data-dir={self._profile.name}"]
        argv += ["--remote-debugging-pipe", "--window-size=1400,1000", "about:blank"]
        self.child = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=wire,  # noqa: PLW1509 (only dup2 runs in the child)
            pass_fds=(3, 4),  # the numbers wire() gives the pipes: left open
            start_new_session=True,
        )
        os.close(to_child)
        os.close(from_child)
        self._buffer = b""
        self._next_id = 0
        self.session = ""
        targets = self.call("Target.getTargets")["targetInfos"]
        page = next(t for t in targets if t["type"] == "page")
        attached = self.call("Target.attachToTarget", targetId=page["targetId"], flatten=True)
        self.session = attached["sessionId"]
        self.call("Runtime.enable")
        self.call("Page.enable")

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one command; its result (an error answer fails the test)."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if self.session:
            message["sessionId"] = self.session
        os.write(self._send_fd, json.dumps(message).encode() + b"\0")
        while True:
            answer = self._receive()
            if answer.get("id") == self._next_id:
                assert "error" not in answer, f"{method}: {answer['error']}"
                result: dict[str, Any] = answer.get("result", {})
                return result
            self.events.append(answer)

    def wait_event(self, method: str) -> dict[str, Any]:
        """The next event ``method`` (one already received counts)."""
        while True:
            for event in self.events:
                if event.get("method") == method:
                    self.events.remove(event)
                    return event
            self.events.append(self._receive())

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (a thrown error fails)."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def mouse(self, kind: str, x: float, y: float, clicks: int = 1) -> None:
        """One mouse event at page coordinates: mousePressed, mouseReleased, mouseMoved."""
        self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left",
                  clickCount=clicks)  # fmt: skip

    def click(self, x: float, y: float, clicks: int = 1) -> None:
        for count in range(1, clicks + 1):
            self.mouse("mousePressed", x, y, count)
            self.mouse("mouseReleased", x, y, count)

    def screenshot(self, path: Path) -> None:
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot")["data"]))

    def problems(self) -> list[str]:
        """Uncaught exceptions and console errors the page reported so far."""
        found = []
        for event in self.events:
            params = event.get("params", {})
            if event.get("method") == "Runtime.exceptionThrown":
                found.append(str(params["exceptionDetails"]))
            elif event.get("method") == "Runtime.consoleAPICalled" and params["type"] == "error":
                found.append(str(params["args"]))
        return found

    def _receive(self) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = self.deadline - time.monotonic()
            assert left > 0, "chromium's DevTools pipe went quiet"
            ready, _, _ = select.select([self._read_fd], [], [], left)
            if ready:
                data = os.read(self._read_fd, 1 << 20)
                assert data, "chromium closed its DevTools pipe"
                self._buffer += data
        message, self._buffer = self._buffer.split(b"\0", 1)
        decoded: dict[str, Any] = json.loads(message)
        return decoded

    def close(self) -> None:
        os.close(self._send_fd)
        os.close(self._read_fd)
        _end_session(self.child)
        self._profile.cleanup()
