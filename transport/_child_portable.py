"""The child on Windows, or anywhere: an ``anyio.open_process`` process and its tree.

Nothing on this module's import path needs ``fcntl`` or a POSIX-only signal: those are
looked up when a POSIX group is signalled. The child starts in a group of its own: a new
session (so a new process group) on POSIX, ``CREATE_NEW_PROCESS_GROUP`` on Windows.

The backend reaps the child when it exits (asyncio's child watcher, trio's wait), which
frees its pid and group id for reuse. As in ``_child_posix``, the leftovers of a POSIX
group are killed as soon as the exit is seen, and the group is never signalled after:
POSIX reuses no pid while a group with that id has members. The window between the
backend's reap and that ``killpg`` is longer here (a loop callback), still far shorter
than a pid wrap-around.

On Windows the tree is ended with ``taskkill /T /F`` while the leader lives (a graceful
stop sends CTRL_BREAK_EVENT to the group first). Descendants left behind by a CLI that
exits on its own are not found once it is gone; a Job Object would fix that and is not
done yet.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from typing import Any

import anyio
import anyio.abc

from ._child import ChildState

WINDOWS = sys.platform == "win32"


def spawn_options() -> dict[str, Any]:
    """`anyio.open_process` arguments that put the child in a group of its own."""
    if WINDOWS:
        return {"creationflags": getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0x200)}
    return {"start_new_session": True}


class PortableChild:
    """A `Child` on an `anyio.abc.Process`."""

    def __init__(self, process: anyio.abc.Process) -> None:
        self.process = process
        self.pid = process.pid
        self.state = ChildState.RUNNING
        self.returncode: int | None = None

    async def wait(self) -> None:
        code = await self.process.wait()
        self._exited(code)

    def _exited(self, code: int) -> None:
        if self.state is ChildState.REAPED:
            return
        if not WINDOWS:
            self._killpg("SIGKILL")  # the leftovers, before the group id can be reused
        if self.returncode is None:
            self.returncode = code
        self.state = ChildState.REAPED

    def _killpg(self, name: str) -> None:
        import signal

        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, getattr(signal, name))

    def signal_tree(self, kill: bool) -> None:
        if self.state is ChildState.REAPED:
            return
        if not WINDOWS:
            self._killpg("SIGKILL" if kill else "SIGTERM")
        elif kill:
            self._taskkill()
        else:
            import signal

            with contextlib.suppress(OSError):
                os.kill(self.pid, getattr(signal, "CTRL_BREAK_EVENT", 1))

    def _taskkill(self) -> None:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(
                ["taskkill", "/T", "/F", "/PID", str(self.pid)],
                capture_output=True,
                timeout=10,
                check=False,
            )
        with contextlib.suppress(OSError):
            self.process.kill()

    def reap(self, force: bool) -> None:
        """The backend collects the status; this only makes sure the tree is dead."""
        if self.state is ChildState.REAPED:
            return
        code = self.process.returncode
        if code is not None:
            self._exited(code)
        elif force:
            self.signal_tree(kill=True)

    def close(self) -> None:
        pass
