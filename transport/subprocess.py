"""The CLI as a child process: `SubprocessTransport`, whichever implementation runs it.

``SubprocessTransport(...)`` makes an instance of the implementation `_child.choose`
picks (``child=`` argument, else ``$CTLWIRE_CHILD``, else the platform's best): the raw
pipe transport of ``_pipes`` on Linux and other POSIX systems, or the
``anyio.open_process`` one of ``_portable``. This module holds what they share: argument
checks, the exit and stderr watch, and the close escalation.
"""

from __future__ import annotations

import enum
import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Self

import anyio
import anyio.lowlevel

from ._backend import DetachedTask
from ._child import Child, choose
from ._lifecycle import AsyncResource, closing_for_ctrl_c
from .base import StderrCallback
from .errors import InputBroken, InputClosed, ProcessExited, TransportError
from .framing import DEFAULT_MAX_LINE_BYTES, LineFramer
from .stderr import StderrLines

logger = logging.getLogger(__name__)

READ_SIZE = 1 << 20
# After the CLI exits, how long its stdout/stderr may stay open (held by a descendant
# that inherited them) before we stop waiting for their EOF.
ORPHANED_PIPE_GRACE = 0.5


class Input(enum.Enum):
    """The CLI's stdin, as we see it."""

    OPEN = "open"
    BROKEN = "broken"  # a write stopped part-way through a line: refuse later writes
    ENDED = "ended"  # closed by end_input
    CLOSED = "closed"  # closed by aclose


class Output(enum.Enum):
    """The CLI's stdout, as we see it."""

    READY = "ready"  # read it straight away
    DRAINED = "drained"  # the last read was short: wait for readiness first
    ORPHANED = "orphaned"  # the CLI exited but a descendant holds it: never wait again
    EOF = "eof"


class Life(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    CLOSING = "closing"
    CLOSED = "closed"


def start_error(program: str, exc: Exception) -> TransportError:
    """What `start` raises when the child cannot be spawned."""
    if isinstance(exc, OSError):
        return TransportError(f"cannot start {program!r}: {exc}")
    # Popen's ValueError (a NUL byte) or TypeError (a value that is not a string).
    return TransportError(
        f"cannot start {program!r}: bad argv, env or cwd: {type(exc).__name__}: {exc}"
    )


def _check_timeout(name: str, value: float) -> float:
    if not isinstance(value, int | float) or math.isnan(value) or value < 0:
        raise ValueError(f"{name} must be a number of seconds >= 0, not {value!r}")
    return value


class SubprocessTransport(AsyncResource):
    """Runs ``argv`` (never through a shell) in its own process group and frames its stdout.

    Use as an async context manager. stderr is read concurrently into lines, passed to
    ``on_stderr`` and kept (the last ``stderr_lines``) for error messages. `aclose` closes
    stdin, waits ``close_timeout`` seconds for the CLI to exit, then asks the whole group
    to end (SIGTERM) and finally kills it (SIGKILL), always reaping the child; any task
    may call it. Leaving the ``async with`` block by KeyboardInterrupt skips the wait for
    a voluntary exit.

    ``child`` (``"linux"``, ``"posix"`` or ``"portable"``; default: ``$CTLWIRE_CHILD``,
    else the best the platform supports) chooses the implementation; see `_child`.
    ``contain`` (default True) ends the CLI's whole tree with the session, descendants
    that left its group and the case of this process dying included; see `_contain`.
    """

    kind = "abstract"
    on_stderr: StderrCallback | None

    def __new__(cls, *args: Any, child: str | None = None, **kwargs: Any) -> SubprocessTransport:
        kind = choose(child)
        implementation: type[SubprocessTransport] = cls
        if cls is SubprocessTransport:
            if kind == "portable":
                from ._portable import PortableTransport

                implementation = PortableTransport
            else:
                from ._pipes import PipeTransport

                implementation = PipeTransport
        instance = object.__new__(implementation)
        instance.kind = kind
        return instance

    def __init__(
        self,
        argv: Sequence[str],
        cwd: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        on_stderr: StderrCallback | None = None,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        *,
        close_timeout: float = 5.0,
        terminate_timeout: float = 2.0,
        stderr_lines: int = 50,
        child: str | None = None,
        contain: bool = True,
    ) -> None:
        if isinstance(argv, str | bytes):
            raise TypeError("argv must be a list of arguments, not a string")
        if not isinstance(argv, Sequence) or not argv:
            raise TypeError("argv must be a non-empty list of arguments")
        if isinstance(max_line_bytes, bool) or not isinstance(max_line_bytes, int):
            raise TypeError(f"max_line_bytes must be an int, not {max_line_bytes!r}")
        if max_line_bytes < 1:
            raise ValueError(f"max_line_bytes must be at least 1, not {max_line_bytes}")
        if isinstance(stderr_lines, bool) or not isinstance(stderr_lines, int):
            raise TypeError(f"stderr_lines must be an int, not {stderr_lines!r}")
        if stderr_lines < 0:
            raise ValueError(f"stderr_lines must be >= 0, not {stderr_lines}")
        if env is not None and not isinstance(env, Mapping):
            raise TypeError(f"env must be a mapping of names to values, not {type(env).__name__}")
        self.argv = [os.fspath(a) for a in argv]
        self.cwd = cwd
        self.env = dict(env) if env is not None else None
        self.on_stderr = on_stderr
        self.contain = contain
        self.close_timeout = _check_timeout("close_timeout", close_timeout)
        self.terminate_timeout = _check_timeout("terminate_timeout", terminate_timeout)
        self._framer = LineFramer(max_line_bytes)
        self._stderr = StderrLines(stderr_lines)
        self._child: Child | None = None
        self._life = Life.NEW
        self._input = Input.OPEN
        self._output = Output.READY
        self._interrupted = False  # closed during a Ctrl-C: no voluntary exit wait
        self._send_lock = anyio.Lock(fast_acquire=True)
        self._exited = anyio.Event()
        self._stdout_done = anyio.Event()
        self._stderr_done = anyio.Event()
        self._closed = anyio.Event()
        self._background = DetachedTask(self._watch, name=f"ctlwire stderr/exit {self.argv[0]}")

    # -- what each implementation provides --------------------------------------------

    async def _spawn(self) -> Child:
        raise NotImplementedError

    async def send(
        self, data: bytes | bytearray, *, guard: Callable[[], bool] | None = None
    ) -> bool:
        raise NotImplementedError

    async def receive_lines(self) -> list[bytes]:
        raise NotImplementedError

    async def _close_input(self, state: Input) -> None:
        raise NotImplementedError

    async def _read_stderr(self) -> None:
        raise NotImplementedError

    async def _orphan_stdout(self) -> None:
        """The CLI exited, a descendant holds stdout open: make reads end at once."""
        raise NotImplementedError

    async def _release(self) -> None:
        """Close every pipe; bounded, called shielded."""
        raise NotImplementedError

    def _release_now(self) -> None:
        """Close every pipe without awaiting (the fallback when a cancel pierced aclose)."""
        raise NotImplementedError

    # -- life cycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Spawn the child. Raises `TransportError` if it cannot be started."""
        if self._life is not Life.NEW:
            raise RuntimeError("transport already started")
        self._life = Life.RUNNING
        self._child = await self._spawn()
        logger.debug("started %s as pid %d (%s)", self.argv, self._child.pid, self.kind)
        self._background.start()

    async def __aenter__(self) -> Self:
        if self._life is not Life.NEW:
            raise RuntimeError("transport already started")  # and not ours to close
        try:
            await self.start()
        except BaseException:
            await self.aclose()  # a Ctrl-C or cancel right after the spawn: end it
            raise
        return self

    @property
    def _closing(self) -> bool:
        """aclose has begun (tests/test_faults.py polls this private name)."""
        return self._life is Life.CLOSING or self._life is Life.CLOSED

    @property
    def pid(self) -> int | None:
        return self._child.pid if self._child is not None else None

    @property
    def returncode(self) -> int | None:
        """The exit code (negative: killed by that signal), or None while running."""
        return self._child.returncode if self._child is not None else None

    @property
    def stderr_tail(self) -> list[str]:
        return list(self._stderr.tail)

    def exit_error(self, detail: str) -> ProcessExited:
        """A `ProcessExited` for ``detail`` with what is known of the child now."""
        return ProcessExited(self.returncode, self.stderr_tail, detail)

    async def wait_exit(self, timeout: float) -> int | None:
        with anyio.move_on_after(timeout):
            await self._exited.wait()
            await self._stderr_done.wait()
        return self.returncode

    def _input_error(self) -> TransportError:
        if self._input is Input.ENDED:
            return InputClosed("cannot write: the CLI's stdin is already closed")
        if self._input is Input.BROKEN:
            return InputBroken(
                "cannot write: the stream to the CLI is broken: an earlier write was"
                " cancelled part-way through a line"
            )
        return TransportError("cannot write: the CLI's stdin is already closed")

    async def end_input(self) -> None:
        async with self._send_lock:
            await self._close_input(Input.ENDED)

    # -- background: stderr and exit ----------------------------------------------------

    async def _watch(self) -> None:
        child = self._child
        assert child is not None
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._read_stderr)
            await child.wait()
            logger.debug("pid %d exited with %s", child.pid, child.returncode)
            self._exited.set()
            with anyio.move_on_after(ORPHANED_PIPE_GRACE):
                await self._stdout_done.wait()
                await self._stderr_done.wait()
            if not self._stdout_done.is_set():
                # A descendant still holds the pipes open: stop waiting for their EOF.
                self._output = Output.ORPHANED
                await self._orphan_stdout()
            tg.cancel_scope.cancel()

    def _last_lines(self) -> list[bytes]:
        """At stdout's EOF: the last line, if it had no newline; else `anyio.EndOfStream`."""
        self._output = Output.EOF
        self._stdout_done.set()
        lines = self._framer.end()
        if lines:
            return lines
        raise anyio.EndOfStream

    # -- closing ----------------------------------------------------------------------

    async def aclose(self) -> None:
        if self._life is Life.CLOSING or self._life is Life.CLOSED:
            await self._closed.wait()
            return
        self._life = Life.CLOSING
        # Closed as a Ctrl-C leaves an `async with` (ours or a wrapper's: a session, a
        # recorder): the CLI gets SIGTERM at once instead of time to exit on EOF.
        self._interrupted = closing_for_ctrl_c()
        try:
            with anyio.CancelScope(shield=True):
                if self._child is not None:  # else nothing started, not even the watch
                    await self._stop_child()
                    self._background.cancel()
                    await self._background.wait()
                    await self._release()
        finally:
            # Reached with the work above undone only if a raw asyncio cancel (or a
            # KeyboardInterrupt on trio) pierced the shield: fall back to blocking calls,
            # which are short after SIGKILL.
            if self._child is not None:
                self._child.reap(force=True)
                self._child.close()
            self._release_now()
            self._exited.set()
            self._stdout_done.set()
            self._life = Life.CLOSED
            self._closed.set()
        await anyio.lowlevel.checkpoint_if_cancelled()

    async def _stop_child(self) -> None:
        child = self._child
        if child is None:
            return
        await self._close_input(Input.CLOSED)
        close_timeout = 0.0 if self._interrupted else self.close_timeout
        if not await self._drain_until_exit(close_timeout):
            logger.debug("pid %d did not exit after stdin EOF; sending SIGTERM", child.pid)
            child.signal_tree(kill=False)
            if not await self._drain_until_exit(self.terminate_timeout):
                logger.warning("pid %d ignored SIGTERM; sending SIGKILL", child.pid)
                child.signal_tree(kill=True)
                await self._drain_until_exit(self.terminate_timeout)
        child.reap(force=False)

    async def _drain_until_exit(self, timeout: float) -> bool:
        """Wait for exit while discarding stdout, so a CLI blocked on writing can finish."""
        with anyio.move_on_after(timeout):
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._discard_stdout)
                await self._exited.wait()
                tg.cancel_scope.cancel()
        return self._exited.is_set()

    async def _discard_stdout(self) -> None:
        try:
            while True:
                await self.receive_lines()
        except Exception:
            pass
