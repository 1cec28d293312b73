"""The child on macOS and the BSDs: no pidfd, no ``waitid``, no pipe-size calls.

The exit is seen by polling ``waitpid(WNOHANG)`` with back-off, and that call reaps the
child. Reaping the leader of a process group frees its pid, and so the group id, for
reuse, which would make a later ``killpg`` hit a stranger. POSIX does not reuse a pid
while a process group with that id exists, so the leftovers (descendants still in the
group) are killed in the same synchronous step as the reap, before anything else can
run: either the group still has members (its id cannot have been reused and ``killpg``
reaches only them) or it is empty (``killpg`` finds nothing). After that the child is
`ChildState.REAPED` and is never signalled again. Unlike the Linux path, descendants
therefore end as soon as the CLI exits, not when the transport closes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess

import anyio

from ._child import ChildState

POLL_FIRST = 0.001
POLL_MAX = 0.05


class PosixChild:
    """A `Child` in a process group of its own, watched by ``waitpid(WNOHANG)``."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self.popen = popen
        self.pid = popen.pid
        self.state = ChildState.RUNNING
        self.returncode: int | None = None

    async def wait(self) -> None:
        delay = POLL_FIRST
        while not self._poll():
            await anyio.sleep(delay)
            delay = min(delay * 2, POLL_MAX)

    def _poll(self) -> bool:
        """True once the child has exited (and, here, been reaped with its leftovers)."""
        if self.state is not ChildState.RUNNING:
            return True
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:  # somebody else reaped it
            self._finish(255)
            return True
        if pid == 0:
            return False
        # Reaped just now: kill the group's leftovers before anything else runs (see the
        # module docstring), then never signal that group id again.
        self._killpg(signal.SIGKILL)
        self._finish(os.waitstatus_to_exitcode(status))
        return True

    def _killpg(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    def signal_tree(self, kill: bool) -> None:
        if self.state is not ChildState.REAPED:
            self._killpg(signal.SIGKILL if kill else signal.SIGTERM)

    def reap(self, force: bool) -> None:
        if self.state is ChildState.REAPED:
            return
        if self.state is ChildState.RUNNING and not force:
            return
        # The leader is not reaped yet (running, or a zombie), so the group id is still
        # ours: take the whole group down, then collect the leader.
        self._killpg(signal.SIGKILL)
        try:
            _, status = os.waitpid(self.pid, 0)
            code = os.waitstatus_to_exitcode(status)
        except ChildProcessError:
            code = 255
        self._finish(code)

    def _finish(self, code: int) -> None:
        if self.returncode is None:
            self.returncode = code
        self.state = ChildState.REAPED
        self.popen.returncode = self.returncode  # Popen must not try to reap it again

    def close(self) -> None:
        pass
