"""The child-process seam: one small interface, three implementations, and the choice.

A child runs in a process group (a job, on Windows) of its own, so that a terminal's
Ctrl-C does not reach it and its whole tree can be ended together. Implementations,
each with the pipes strategy `SubprocessTransport` pairs it with:

``linux`` (``_child_linux``)
    pidfd for the exit, ``waitid(WNOWAIT)`` so the group stays ours to kill until we
    reap; raw non-blocking pipes (``_pipes``), made bigger with ``F_SETPIPE_SZ``.
``posix`` (``_child_posix``)
    macOS and the BSDs: the same raw pipes, the exit seen by ``waitpid(WNOHANG)``
    polled with back-off, the group ended with ``killpg``.
``portable`` (``_child_portable``)
    Windows, or anywhere: ``anyio.open_process`` streams (``_portable``); nothing
    signal- or fcntl-specific on its import path.

Contained sessions on the raw pipes are watched by a fourth, ``_child_served``: their
process is the session's supervisor, forked by the supervisor server, not our child.

`choose` picks the first one the platform supports, unless the ``child`` argument of
`SubprocessTransport` or the ``CTLWIRE_CHILD`` environment variable (read when a
transport is made) names one. Every platform-specific call is feature-tested here, never
assumed.
"""

from __future__ import annotations

import enum
import os
import signal
import sys
from typing import Protocol

from .errors import TransportError

CHILD_ENV = "CTLWIRE_CHILD"
KINDS = ("linux", "posix", "portable")


class ChildState(enum.Enum):
    RUNNING = "running"
    EXITED = "exited"  # its exit status is known; not collected, the group is still ours
    REAPED = "reaped"  # collected: its pid (and group id) may be reused by the system


class Child(Protocol):
    """One child process and its tree."""

    pid: int
    state: ChildState
    returncode: int | None

    async def wait(self) -> None:
        """Return once the child has exited, with `returncode` set."""
        ...

    def signal_tree(self, kill: bool) -> None:
        """Ask the whole tree to end (SIGTERM, or its like), or kill it (``kill``)."""
        ...

    def reap(self, force: bool) -> None:
        """Kill what is left of the tree and collect the exit status, if the child has
        exited; with ``force``, kill it first if it has not. Blocks only briefly."""
        ...

    def close(self) -> None:
        """Release what watching the child took (a pidfd); idempotent."""
        ...


def missing(kind: str) -> list[str]:
    """What this platform lacks for ``kind``; empty if it can run it."""
    lacking: list[str] = []
    posix = ["killpg", "waitpid", "WNOHANG", "set_blocking", "waitstatus_to_exitcode"]
    signals = ["SIGTERM", "SIGKILL"]
    if kind == "linux":
        if not sys.platform.startswith("linux"):
            lacking.append("a Linux kernel")
        posix += ["pidfd_open", "waitid", "WNOWAIT", "P_PID", "WEXITED", "CLD_EXITED"]
    elif kind == "portable":
        if sys.platform == "win32":
            return []
        posix, signals = ["killpg"], ["SIGTERM", "SIGKILL"]
    elif kind != "posix":
        raise TransportError(f"unknown child implementation {kind!r}; choose from {KINDS}")
    elif sys.platform == "win32":
        lacking.append("a POSIX system")
    lacking += [f"os.{name}" for name in posix if not hasattr(os, name)]
    lacking += [f"signal.{name}" for name in signals if not hasattr(signal, name)]
    return lacking


def choose(requested: str | None) -> str:
    """The implementation to run: ``requested``, else ``$CTLWIRE_CHILD``, else the first
    of `KINDS` this platform supports. `TransportError` naming what is missing if none."""
    kind = requested or os.environ.get(CHILD_ENV) or None
    if kind is not None:
        lacking = missing(kind)
        if lacking:
            raise TransportError(
                f"the {kind!r} child-process implementation cannot run here: "
                f"{sys.platform} lacks {', '.join(lacking)}"
            )
        return kind
    reasons = []
    for candidate in KINDS:
        lacking = missing(candidate)
        if not lacking:
            return candidate
        reasons.append(f"{candidate} needs {', '.join(lacking)}")
    raise TransportError(
        f"no child-process implementation runs on {sys.platform}: " + "; ".join(reasons)
    )
