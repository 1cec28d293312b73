"""What tests share besides fixtures: the test peers, a few helpers, the shipped logs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from ctlwire.fixtures import records as r
from ctlwire.protocol import RequestContext
from ctlwire.transport import Transport, _contain, _served
from ctlwire.transport._child import CHILD_ENV, missing

TESTS = Path(__file__).parent
# `make test` runs the suite a second time in an interpreter stripped like macOS's.
STRIPPED = os.environ.get("CTLWIRE_STRIPPED") == "1"
# For tests that use none of the platform's process calls the stripping removes (pages,
# the set-up in a fresh venv, the conformance kit's own checks, a second SDK version):
# their outcome is the same in both runs, so the first run alone makes them.
first_run_only = pytest.mark.skipif(
    STRIPPED, reason="uses no process call the stripped run removes: the first run covers it"
)
PEER = TESTS / "peer.py"
HOSTILE_PEER = TESTS / "hostile_peer.py"
SHIPPED_LOGS = TESTS.parent / "fixtures" / "logs"
# The four sessions recorded by hand from the real CLI 2.1.330 (the others are made by
# the end-to-end tests or by `ctlwire.fixtures.synthetic`).
REAL_SESSION_NAMES = ("basic_write", "interrupt_tool", "mcp_sdk", "slow_hook")


def real_session_logs() -> list[Path]:
    """The hand-recorded real sessions shipped in ``fixtures/logs``; never empty."""
    logs = [SHIPPED_LOGS / f"{name}.jsonl" for name in REAL_SESSION_NAMES]
    missing = [str(p) for p in logs if not p.is_file()]
    assert not missing, f"shipped real-session logs missing: {missing}"
    return logs


def real_session(name: str) -> Path:
    """One shipped real-session log by file name (``slow_hook.jsonl``)."""
    path = SHIPPED_LOGS / name
    assert path.is_file(), f"no shipped log {path}"
    return path


def force_child(kind: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Make every SubprocessTransport (here and in Python children started from here)
    use the ``kind`` implementation; skip if this interpreter cannot run it."""
    lacking = missing(kind)
    if lacking:
        pytest.skip(f"{kind} cannot run here: lacks {', '.join(lacking)}")
    monkeypatch.setenv(CHILD_ENV, kind)
    return kind


def peer_argv(*args: str) -> list[str]:
    """argv that runs the scriptable test peer with a scenario."""
    return [sys.executable, str(PEER), *args]


def script_line(value: Any) -> str:
    """One JSON line as the latin-1 text a hostile peer's script carries."""
    return json.dumps(value).encode().decode("latin-1") + "\n"


def hostile_argv(tmp_path: Path, steps: list[dict[str, Any]]) -> list[str]:
    """argv that runs `hostile_peer.py` on ``steps`` (written to a new script file)."""
    script = tmp_path / f"script_{len(list(tmp_path.glob('script_*')))}.json"
    script.write_text(json.dumps(steps))
    return [sys.executable, str(HOSTILE_PEER), str(script)]


async def ping(request: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
    """A handler that answers ``{"pong": v}``."""
    return {"pong": request.get("v")}


async def read_all(transport: Transport) -> list[bytes]:
    """Every stdout line until the CLI's output ends."""
    lines: list[bytes] = []
    try:
        while True:
            lines += await transport.receive_lines()
    except anyio.EndOfStream:
        return lines


def run_python(code: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``python -c CODE ARGS...`` in this interpreter, output captured as text."""
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def one_turn_log(path: Path, reply: str = "hello", gap: float = 0.0) -> Path:
    """A session of one turn whose assistant says ``reply`` and whose result comes ``gap``
    seconds in (with --realtime, a slow replay)."""
    return r.write_log(
        path,
        [
            r.sdk(r.request("req_1_a", "initialize", hooks=None)),
            r.cli(r.success("req_1_a", {"commands": []})),
            r.sdk(r.user("hi")),
            r.cli(r.assistant(reply)),
            r.cli(r.result(), t=gap),
            r.sdk_eof(t=gap),
            r.cli_exit(0, t=gap),
        ],
    )


def process_parents() -> dict[int, int]:
    """Every process's parent, read from /proc: pid -> parent pid."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    return parents


def descendants() -> set[int]:
    """Every process this one started, from /proc: its whole tree, and the tree of its
    supervisor server (which forks each contained session's supervisor), less the
    server itself, which lives as long as this process."""
    children: dict[int, list[int]] = {}
    for pid, parent in process_parents().items():
        children.setdefault(parent, []).append(pid)
    server = _served.link.pid
    found: set[int] = set()
    todo = [os.getpid()] + ([server] if server is not None else [])
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def open_fds() -> set[str]:
    """This process's open fds. The supervisor server's socket, opened by the first
    contained session and then held for the process's life, is opened first if need be,
    so that it never counts as a leak."""
    if sys.platform != "win32":
        _served.server_pid(_contain.run_module)
    return set(os.listdir("/proc/self/fd"))
