"""Shared fixtures: both anyio backends, the test peer, and a guard against leaked children."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

PEER = Path(__file__).with_name("peer.py")
REAL_SESSIONS = Path(__file__).parents[2] / "shared" / "real-sessions"


def real_session_logs() -> list[Path]:
    """The sessions recorded from the real CLI (../shared/real-sessions); never empty."""
    logs = sorted(REAL_SESSIONS.glob("*.jsonl"))
    assert len(logs) >= 4, f"expected the real-session logs in {REAL_SESSIONS}"
    return logs


def peer_argv(*args: str) -> list[str]:
    """argv that runs the scriptable test peer with a scenario."""
    return [sys.executable, str(PEER), *args]


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _children() -> list[int]:
    me = str(os.getpid())
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if stat.rsplit(")", 1)[1].split()[1] == me:
                found.append(int(entry))
    return found


@pytest.fixture(autouse=True)
def no_leaked_children() -> object:
    """Every test must leave no child process behind, running or unreaped."""
    before = set(_children())
    yield
    leaked = set(_children()) - before
    assert not leaked, f"child processes left behind: {sorted(leaked)}"
