"""Fixtures for every test: both anyio backends and a guard against leaked children."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]


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
