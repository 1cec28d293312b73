"""The child on the supervisor server's path: the session's supervisor, watched by channel.

Its process is the session's supervisor, forked by the server (``_served``), so not our
child: its start and exit status come as lines on the session's channel (``started``,
``failed ERRNO``, ``exit CODE``, ``gone``). The server leaves it unreaped until the channel
is closed (`close`), so its pid and group id stay ours to signal until then.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import signal
import time
from collections.abc import Callable

import anyio

from ._child import ChildState
from ._served import drop_server, let_go, release

START_WAIT = 10.0  # for the supervisor's word that the CLI started (it takes ~1 ms)
KILL_WAIT = 2.0  # after SIGKILL: how long `reap` waits for the supervisor's end
RELEASE_WAIT = 0.5  # for the server to reap it once we let go (it takes ~0.1 ms)


class ServedChild:
    """A `Child` whose process is its session's supervisor, a child of the server."""

    def __init__(self, channel: int) -> None:
        self.pid = 0
        self.state = ChildState.RUNNING
        self.returncode: int | None = None
        self._channel: int | None = channel
        self._received = b""
        self._killed = False
        self._cli = 0  # the CLI's pid, as the supervisor said
        self._ended = False  # EOF on the channel: every other end of it is closed

    async def started(self, program: str) -> None:
        """Wait for the supervisor's word on the CLI's start, shielded as a direct spawn
        cannot be cancelled half done, and bounded; the OSError a spawn would raise if it
        failed."""
        with anyio.move_on_after(START_WAIT, shield=True):
            word, _, rest = (await self._next_line()).partition(" ")
            if word == "started":
                self.pid, self._cli = (int(n) for n in rest.split()[:2])
                return
            if word == "failed":
                raise OSError(int(rest), os.strerror(int(rest)), program)
            why = f"failed: {rest}" if word == "crashed" else "ended first"
            raise OSError(errno.ECHILD, f"its containment supervisor {why}", program)
        drop_server()  # stopped or stuck: the next session gets a new one
        raise OSError(errno.ETIMEDOUT, f"no word from its supervisor in {START_WAIT:g} s", program)

    async def wait(self) -> None:
        while self.state is ChildState.RUNNING:
            self._take(await self._next_line())

    def _take(self, line: str) -> None:
        word, *numbers = line.split() or [""]
        if word == "exit":
            self.returncode = int(numbers[0])
        elif self.returncode is None:
            # Gone without a word: killed. End what is left of its group (it is not
            # reaped yet, so the group id is still its own); what left it has escaped.
            self.signal_tree(kill=True)
            self._end_cli_group()
            self.returncode = int(numbers[0]) if numbers else -signal.SIGKILL
        self.state = ChildState.EXITED

    def _end_cli_group(self) -> None:
        """In ``group`` mode the CLI leads a group of its own: end it too, while its leader
        still lives (so that id is not free to be reused)."""
        with contextlib.suppress(OSError):
            if self._cli and os.getpgid(self._cli) == self._cli:
                os.killpg(self._cli, signal.SIGKILL)

    async def _next_line(self) -> str:
        """The next line on the channel; "" at its end."""
        while True:
            line = self._line_now()
            if line is not None:
                return line
            fd = self._channel
            if fd is None:
                return ""
            with contextlib.suppress(anyio.ClosedResourceError):
                await anyio.wait_readable(fd)

    def _line_now(self) -> str | None:
        """The next line if one is in, "" at the end of the channel, None if none yet."""
        end = self._received.find(b"\n")
        if end < 0 and self._channel is not None and not self._ended:
            try:
                data = os.read(self._channel, 256)
            except BlockingIOError:
                return None
            except OSError:
                data = b""
            if not data:
                self._ended = True
                rest, self._received = self._received, b""
                return rest.decode(errors="replace")
            self._received += data
            end = self._received.find(b"\n")
            if end < 0:
                return None
        if end < 0:
            return ""
        line, self._received = self._received[:end], self._received[end + 1 :]
        return line.decode(errors="replace")

    def signal_tree(self, kill: bool) -> None:
        if self.state is ChildState.REAPED or self.pid == 0:
            return
        self._killed = self._killed or kill
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL if kill else signal.SIGTERM)

    def reap(self, force: bool) -> None:
        """As a direct child's: once this returns the supervisor is reaped (by the server,
        which learns that we let go by EOF on the channel and closes its end after)."""
        if self.state is ChildState.RUNNING:
            if not force:
                return
            self.signal_tree(kill=True)
            self._wait_blocking(KILL_WAIT, lambda: self.state is not ChildState.RUNNING)
        fd = self._channel
        if fd is not None:
            with contextlib.suppress(OSError):
                let_go(fd)
            self._wait_blocking(RELEASE_WAIT, lambda: self._ended)
        self.close()

    def _wait_blocking(self, timeout: float, done: Callable[[], bool]) -> None:
        """Read the channel until ``done``, without an event loop; bounded."""
        fd = self._channel
        if fd is None:
            return
        watch = select.poll()
        watch.register(fd, select.POLLIN)
        deadline = time.monotonic() + timeout
        while not done() and time.monotonic() < deadline:
            line = self._line_now()
            if line is None:
                watch.poll(max(0.0, deadline - time.monotonic()) * 1000)
            elif self.state is ChildState.RUNNING:
                self._take(line)

    def close(self) -> None:
        fd, self._channel = self._channel, None
        if fd is not None:
            with contextlib.suppress(OSError):
                anyio.notify_closing(fd)
                release(fd)
        if self.state is ChildState.RUNNING and self.returncode is None:
            self.returncode = -signal.SIGKILL if self._killed else 255
        self.state = ChildState.REAPED
