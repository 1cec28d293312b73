"""Fixtures for every test: both anyio backends, a guard against leaked children, and
property tests that never fail on timing."""

from __future__ import annotations

import os

import pytest
from helpers import process_parents
from hypothesis import HealthCheck, settings

pytest_plugins = ["pytester"]

# Speed is the bench's business: no property test may fail because a busy machine (two
# xdist workers on two cores) made example generation or one example slow.
settings.register_profile("ctlwire", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ctlwire")


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _children() -> list[int]:
    me = os.getpid()
    return [pid for pid, parent in process_parents().items() if parent == me]


@pytest.fixture(autouse=True)
def no_leaked_children() -> object:
    """Every test must leave no child process behind, running or unreaped."""
    before = set(_children())
    yield
    leaked = set(_children()) - before
    assert not leaked, f"child processes left behind: {sorted(leaked)}"
