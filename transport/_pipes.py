"""The CLI's pipes, raw: `subprocess.Popen` and ``os.read``/``os.write`` on non-blocking fds.

The pipes strategy of ``child="linux"`` and ``child="posix"``: it spawns, writes, reads,
reads stderr, orphans and closes, and tunes the pipe size; it keeps no transport state
(that is `StreamState`'s job) and knows nothing of lines. The `Child` that watches and
ends the process comes from ``_child_linux`` or ``_child_posix``.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Awaitable

import anyio

from ._backend import ReadableWatch, Watch
from ._child import Child
from ._child_served import ServedChild
from ._contain import Containment
from .errors import start_error

# How much one read asks for when the pipe size is unknown: its capacity on Linux.
DEFAULT_READ_SIZE = 1 << 16
# The stdout pipe size asked for on Linux: fewer, larger reads in a flood.
LINUX_PIPE_SIZE = 1 << 20
STDERR_READ_SIZE = 65536


def tune_pipe(fd: int, kind: str) -> int:
    """Best effort: make the pipe bigger (``F_SETPIPE_SZ``, Linux only). Return the size
    to read at once: the pipe's capacity, since asking for much more than a pipe can hold
    makes every read allocate a big buffer and shrink it, which fragments the heap."""
    if kind != "linux":
        return DEFAULT_READ_SIZE  # macOS pipes hold 64 KiB at most
    try:
        import fcntl
    except ImportError:
        return DEFAULT_READ_SIZE
    size_op = getattr(fcntl, "F_SETPIPE_SZ", None)
    if size_op is None:
        return DEFAULT_READ_SIZE
    try:
        return max(fcntl.fcntl(fd, size_op, LINUX_PIPE_SIZE), LINUX_PIPE_SIZE)
    except OSError:
        return LINUX_PIPE_SIZE  # over the user's limit: reads as big as before


class RawPipes:
    """stdin, stdout and stderr of one child as non-blocking fds."""

    # A cancelled wait for room writes nothing: only a line already part-way out breaks.
    cancel_may_cut = False

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.stdin: int | None = None
        self.stdout: int | None = None
        self.stderr: int | None = None
        self.read_size = DEFAULT_READ_SIZE
        self._stdout_watch: Watch | None = None

    async def spawn(self, launch: Containment) -> Child:
        """Start ``launch`` in a process group of its own, its three pipes ours; the one
        place a child is spawned on this strategy. `TransportError` if it cannot be."""
        fds: list[int] = []
        try:
            stdin_r, stdin_w = os.pipe()
            fds += (stdin_r, stdin_w)
            stdout_r, stdout_w = os.pipe()
            fds += (stdout_r, stdout_w)
            stderr_r, stderr_w = os.pipe()
            fds += (stderr_r, stderr_w)
            self.read_size = tune_pipe(stdout_r, self.kind)
            channel = launch.serve((stdin_r, stdout_w, stderr_w)) if launch.servable else None
            if channel is not None:
                child: Child = ServedChild(channel)
            else:
                child = self._popen(launch, stdin_r, stdout_w, stderr_w)
        except (OSError, ValueError, TypeError) as exc:
            # ValueError: a NUL byte in argv, env or cwd; TypeError: a value that is not
            # a string. Either way nothing was started, and the pipes must not leak.
            for fd in fds:
                os.close(fd)
            launch.failed()
            raise start_error(launch.program, exc) from exc
        for fd in (stdin_r, stdout_w, stderr_w):
            os.close(fd)
        self.stdin, self.stdout, self.stderr = stdin_w, stdout_r, stderr_r
        if isinstance(child, ServedChild):
            try:
                await child.started(launch.program)
            except BaseException as exc:
                child.close()
                self.close_now()
                if isinstance(exc, OSError):
                    raise start_error(launch.program, exc) from exc
                raise
        for fd in (stdin_w, stdout_r, stderr_r):
            os.set_blocking(fd, False)
        self._stdout_watch = ReadableWatch(stdout_r)
        launch.started(child.pid)
        return child

    def _popen(self, launch: Containment, stdin: int, stdout: int, stderr: int) -> Child:
        """Spawn ``launch`` directly: a `Child` of this process."""
        from ._child_posix import PosixChild

        child_class: type[PosixChild] = PosixChild
        if self.kind == "linux":
            from ._child_linux import LinuxChild

            child_class = LinuxChild
        # fork/exec returns at once; nothing here waits for the child.
        popen = subprocess.Popen(
            launch.argv,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            cwd=launch.cwd,
            env=launch.env,
            close_fds=True,
            pass_fds=launch.pass_fds,
            process_group=0,
        )
        return child_class(popen)

    # -- stdin ------------------------------------------------------------------------

    def try_write(self, view: memoryview) -> int:
        """Write what the pipe takes now; the count. `BrokenPipeError` if the reader is
        gone, `anyio.ClosedResourceError` once stdin is closed."""
        fd = self.stdin
        if fd is None:
            raise anyio.ClosedResourceError
        try:
            return os.write(fd, view)
        except BlockingIOError:
            return 0

    async def wait_writable(self, view: memoryview) -> int:
        """Wait until stdin has room; writes nothing (0): the caller asks its guard, then
        tries again."""
        fd = self.stdin
        if fd is None:
            raise anyio.ClosedResourceError
        await anyio.wait_writable(fd)
        return 0

    async def close_input(self) -> None:
        fd, self.stdin = self.stdin, None
        if fd is not None:
            anyio.notify_closing(fd)
            os.close(fd)

    # -- stdout -----------------------------------------------------------------------

    def read_now(self) -> bytes | None:
        """What stdout holds now (b"" at its end), or None if nothing yet;
        `anyio.EndOfStream` once it was closed."""
        fd = self.stdout
        if fd is None:
            raise anyio.EndOfStream
        try:
            return os.read(fd, self.read_size)
        except BlockingIOError:
            return None

    def wait_readable(self) -> Awaitable[None]:
        """What to await until stdout can be read (`anyio.ClosedResourceError` if it is
        orphaned or closed meanwhile); `anyio.EndOfStream` if it was closed before. The
        watch's own wait, not a coroutine around it: this is every read's hot path."""
        if self.stdout is None or self._stdout_watch is None:
            raise anyio.EndOfStream
        return self._stdout_watch.wait()

    async def orphan_stdout(self) -> None:
        """The CLI exited, a descendant holds stdout open: make waits end at once."""
        if self._stdout_watch is not None:
            self._stdout_watch.close()

    # -- stderr -----------------------------------------------------------------------

    async def read_stderr(self) -> bytes:
        """The next chunk of stderr; b"" at its end or once it is closed."""
        while True:
            fd = self.stderr
            if fd is None:
                return b""
            try:
                return os.read(fd, STDERR_READ_SIZE)
            except BlockingIOError:
                pass
            try:
                await anyio.wait_readable(fd)
            except anyio.ClosedResourceError:
                return b""

    # -- closing ----------------------------------------------------------------------

    async def close(self, timeout: float) -> None:
        """Close every pipe (nothing here needs to wait)."""
        self.close_now()

    def close_now(self) -> None:
        """Close every pipe without awaiting; idempotent."""
        if self._stdout_watch is not None:
            self._stdout_watch.close()
        for name in ("stdin", "stdout", "stderr"):
            fd = getattr(self, name)
            if fd is not None:
                setattr(self, name, None)
                with contextlib.suppress(OSError):
                    anyio.notify_closing(fd)
                    os.close(fd)
