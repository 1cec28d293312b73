"""The child on Linux: pidfd and ``waitid(WNOWAIT)``.

The exit is read without reaping (``WNOWAIT``), so the process group stays ours to kill
until `reap`, which first kills what is left of the group and only then collects the
leader: descendants that outlived the CLI end when the transport closes.
"""

from __future__ import annotations

import contextlib
import os
import subprocess

import anyio

from ._child import ChildState
from ._child_posix import POLL_FIRST, POLL_MAX, PosixChild


class LinuxChild(PosixChild):
    """A `Child` watched through a pidfd and read with ``waitid(WNOWAIT)``."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        super().__init__(popen)
        self._pidfd: int | None = None
        with contextlib.suppress(OSError):
            self._pidfd = os.pidfd_open(self.pid)

    async def wait(self) -> None:
        if self._pidfd is not None:
            with contextlib.suppress(anyio.ClosedResourceError):
                await anyio.wait_readable(self._pidfd)
        delay = POLL_FIRST
        while not self._poll():
            await anyio.sleep(delay)  # no pidfd (or it woke early): poll with back-off
            delay = min(delay * 2, POLL_MAX)

    def _poll(self) -> bool:
        """Read the exit status without reaping, so the process group stays ours to kill."""
        if self.state is not ChildState.RUNNING:
            return True
        try:
            info = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:  # somebody else reaped it
            self._finish(255)
            return True
        if info is None:
            return False
        if info.si_code == os.CLD_EXITED:
            self.returncode = info.si_status
        else:
            self.returncode = -info.si_status
        self.state = ChildState.EXITED
        return True

    def close(self) -> None:
        fd, self._pidfd = self._pidfd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                anyio.notify_closing(fd)
                os.close(fd)
