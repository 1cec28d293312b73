"""The CLI as a child process: `SubprocessTransport`.

One concrete class on two parts chosen once, in ``__init__``: a `StreamState` (the
rules for stdin, stdout and the transport's life, no I/O) and a pipes strategy that
does the I/O (``_pipes.RawPipes`` on Linux and other POSIX systems, or
``_portable.ProcessStreams`` on ``anyio.open_process``; see `_child.choose`). This
module adds the argument checks, the write lock and guard, line framing, the exit and
stderr watch, and the close escalation.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Protocol, Self

import anyio
import anyio.lowlevel

from ._arguments import check_count, check_seconds, checked_argv
from ._backend import DetachedTask
from ._child import Child, choose
from ._contain import Containment
from ._contain import prepare as contain
from ._lifecycle import AsyncResource, closing_for_ctrl_c
from ._pipes import RawPipes
from ._portable import ProcessStreams
from ._stream import Input, Life, Output, StreamState
from .base import StderrCallback
from .errors import ProcessExited, TransportError, start_error
from .framing import DEFAULT_MAX_LINE_BYTES, LineFramer
from .stderr import StderrLines

logger = logging.getLogger(__name__)

# The hot paths compare against these without an Enum class lookup.
_OPEN, _DRAINED, _EOF = Input.OPEN, Output.DRAINED, Output.EOF
# After the CLI exits, how long its stdout/stderr may stay open (held by a descendant
# that inherited them) before we stop waiting for their EOF.
ORPHANED_PIPE_GRACE = 0.5


class Pipes(Protocol):
    """What a pipes strategy does; it never sees the transport's state."""

    # Whether a cancelled `wait_writable` may have written part of its data.
    cancel_may_cut: bool

    async def spawn(self, launch: Containment) -> Child: ...
    def try_write(self, view: memoryview) -> int: ...
    async def wait_writable(self, view: memoryview) -> int: ...
    async def close_input(self) -> None: ...
    def read_now(self) -> bytes | None: ...
    def wait_readable(self) -> Awaitable[None]: ...
    async def orphan_stdout(self) -> None: ...
    async def read_stderr(self) -> bytes: ...
    async def close(self, timeout: float) -> None: ...
    def close_now(self) -> None: ...


class SubprocessTransport(AsyncResource):
    """Runs ``argv`` (never through a shell) in its own process group and frames its stdout.

    Use as an async context manager. stderr is read concurrently into lines, passed to
    ``on_stderr`` and kept (the last ``stderr_lines``) for error messages. `aclose` closes
    stdin, waits ``close_timeout`` seconds for the CLI to exit, then asks the whole group
    to end (SIGTERM) and finally kills it (SIGKILL), always reaping the child; any task
    may call it. Leaving the ``async with`` block by KeyboardInterrupt skips the wait for
    a voluntary exit.

    ``child`` (``"linux"``, ``"posix"`` or ``"portable"``; default: ``$CTLWIRE_CHILD``,
    else the best the platform supports; see `_child`) chooses how the child is watched
    and which pipes strategy talks to it; ``kind`` tells which was chosen.
    ``contain`` (default True) ends the CLI's whole tree with the session, descendants
    that left its group and the case of this process dying included; see `_contain`.
    """

    on_stderr: StderrCallback | None

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
        self.argv = checked_argv(argv)
        check_count("max_line_bytes", max_line_bytes, 1)
        check_count("stderr_lines", stderr_lines, 0)
        if env is not None and not isinstance(env, Mapping):
            raise TypeError(f"env must be a mapping of names to values, not {type(env).__name__}")
        self.cwd = cwd
        self.env = dict(env) if env is not None else None
        self.on_stderr = on_stderr
        self.contain = contain
        self.close_timeout = check_seconds("close_timeout", close_timeout)
        self.terminate_timeout = check_seconds("terminate_timeout", terminate_timeout)
        self.kind = choose(child)
        self._pipes = _pipes_for(self.kind)
        self._state = StreamState()
        self._framer = LineFramer(max_line_bytes)
        self._stderr = StderrLines(stderr_lines)
        self._child: Child | None = None
        self._launch: Containment | None = None  # released once the child is closed
        self._interrupted = False  # closed during a Ctrl-C: no voluntary exit wait
        self._send_lock = anyio.Lock(fast_acquire=True)
        self._exited = anyio.Event()
        self._stdout_done = anyio.Event()
        self._stderr_done = anyio.Event()
        self._closed = anyio.Event()
        self._background = DetachedTask(self._watch, name=f"ctlwire stderr/exit {self.argv[0]}")

    # -- life cycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Spawn the child. Raises `TransportError` if it cannot be started."""
        self._state.start()
        try:
            launch = contain(self.argv, self.contain, self.cwd, self.env, self.terminate_timeout)
        except (OSError, ValueError, TypeError) as exc:  # as a spawn would fail
            raise start_error(self.argv[0], exc) from exc
        self._child = await self._pipes.spawn(launch)
        self._launch = launch
        logger.debug("started %s as pid %d (%s)", self.argv, self._child.pid, self.kind)
        self._background.start()

    async def __aenter__(self) -> Self:
        if self._state.life is not Life.NEW:
            raise RuntimeError("transport already started")  # and not ours to close
        try:
            await self.start()
        except BaseException:
            await self.aclose()  # a Ctrl-C or cancel right after the spawn: end it
            raise
        return self

    @property
    def pid(self) -> int | None:
        """The process started: the CLI, or its supervisor when contained, which passes
        SIGINT, SIGHUP, SIGQUIT, SIGUSR1/2 and SIGWINCH on to the CLI and ends the whole
        tree on SIGTERM."""
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

    # -- stdin ------------------------------------------------------------------------

    async def send(
        self, data: bytes | bytearray, *, guard: Callable[[], bool] | None = None
    ) -> bool:
        """When no other write is part-way through and the pipe has room, this writes at
        once without taking the lock (and without a checkpoint)."""
        lock = self._send_lock
        try:
            if lock.locked():
                async with lock:
                    return await self._write_all(memoryview(data), guard, False)
            # Nothing below awaits before the lock is held, so lines cannot interleave.
            if guard is not None and not self._ask(guard):
                return False
            view = memoryview(data)
            rest = self._write_now(view)
            if rest:
                lock.acquire_nowait()
                try:
                    if len(rest) == len(view):  # nothing written yet: the guard still rules
                        return await self._write_all(rest, guard, False, tried=True)
                    return await self._write_all(rest, None, True, tried=True)
                finally:
                    lock.release()
            return True
        except BrokenPipeError:
            await self.wait_exit(1.0)
            raise self.exit_error("cannot write to the CLI's stdin") from None

    def _ask(self, guard: Callable[[], bool]) -> bool:
        """The guard's answer, asked only if a write could happen now."""
        if self._state.input is not _OPEN:
            raise self._state.write_error()
        return guard()

    def _write_now(self, view: memoryview) -> memoryview:
        """Write what the pipe takes now; return what is left."""
        if self._state.input is not _OPEN:
            raise self._state.write_error()
        try:
            return view[self._pipes.try_write(view) :]
        except anyio.ClosedResourceError:
            raise TransportError("the CLI's stdin was closed while writing") from None

    async def _write_all(
        self,
        view: memoryview,
        guard: Callable[[], bool] | None,
        started: bool,
        tried: bool = False,
    ) -> bool:
        """Write all of ``view``, waiting for room; ``started``: part of the line is out;
        ``tried``: the pipe just refused the first byte, so wait before asking again."""
        while True:
            if not tried:
                if guard is not None and not self._ask(guard):
                    return False
                rest = self._write_now(view)
                if not rest:
                    return True
                if len(rest) < len(view):
                    started, guard = True, None
                view = rest
            tried = False
            try:
                written = await self._pipes.wait_writable(view)
            except anyio.ClosedResourceError:
                raise TransportError("the CLI's stdin was closed while writing") from None
            except BrokenPipeError:
                raise  # the CLI is gone: `send` says so
            except BaseException as exc:
                if (started or self._pipes.cancel_may_cut) and self._state.break_input():
                    logger.debug("stdin broken mid-line by %r", exc)
                raise
            if written == len(view):
                return True

    async def end_input(self) -> None:
        async with self._send_lock:
            self._state.end_input()
            await self._pipes.close_input()

    # -- stdout -----------------------------------------------------------------------

    async def receive_lines(self) -> list[bytes]:
        if self._state.life is Life.CLOSING:  # the close reads stdout itself, to its end
            raise anyio.EndOfStream
        return await self._read_lines()

    async def _read_lines(self) -> list[bytes]:
        state, pipes, framer = self._state, self._pipes, self._framer
        waited = False
        while True:
            if framer.error is not None:
                raise framer.error
            output = state.output
            if output is _EOF:
                raise anyio.EndOfStream
            if output is _DRAINED:
                try:
                    await pipes.wait_readable()
                except anyio.ClosedResourceError:
                    if not state.orphaned:
                        raise TransportError("the transport was closed") from None
                waited = True
            data = pipes.read_now()
            if data is None:
                if state.would_block():
                    continue
                data = b""  # an orphaned stdout with nothing left: its end
            elif data:
                state.read(len(data))
            if not data:
                return self._last_lines()
            lines = framer.feed(data)
            if lines:
                if not waited:
                    # Data was ready without waiting: yield once anyway, so a flood cannot
                    # starve handlers and consumers, without risking the lines just read.
                    await anyio.lowlevel.cancel_shielded_checkpoint()
                return lines
            await anyio.lowlevel.checkpoint()
            waited = True

    def _last_lines(self) -> list[bytes]:
        """At stdout's EOF: the last line, if it had no newline; else `anyio.EndOfStream`."""
        self._state.ended()
        self._stdout_done.set()
        lines = self._framer.end()
        if lines:
            return lines
        raise anyio.EndOfStream

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
                self._state.orphan()
                await self._pipes.orphan_stdout()
            tg.cancel_scope.cancel()

    async def _read_stderr(self) -> None:
        read, feed = self._pipes.read_stderr, self._stderr.feed
        try:
            while data := await read():
                feed(data, self.on_stderr)
        finally:
            self._stderr.end(self.on_stderr)
            self._stderr_done.set()

    # -- closing ----------------------------------------------------------------------

    async def aclose(self) -> None:
        if not self._state.begin_close():
            await self._closed.wait()
            return
        # Closed as a Ctrl-C leaves an `async with` (ours or a wrapper's: a session, a
        # recorder): the CLI gets SIGTERM at once instead of time to exit on EOF.
        self._interrupted = closing_for_ctrl_c()
        try:
            with anyio.CancelScope(shield=True):
                if self._child is not None:  # else nothing started, not even the watch
                    await self._stop_child()
                    self._background.cancel()
                    await self._background.wait()
                    await self._pipes.close(max(self.terminate_timeout, 1.0))
        finally:
            # Reached with the work above undone only if a raw asyncio cancel (or a
            # KeyboardInterrupt on trio) pierced the shield: fall back to blocking calls,
            # which are short after SIGKILL.
            if self._child is not None:
                self._child.reap(force=True)
                self._child.close()
            if self._launch is not None:
                self._launch.release()  # the supervisor or the job ends what is left
            self._pipes.close_now()
            self._exited.set()
            self._stdout_done.set()
            self._state.closed()
            self._closed.set()
        await anyio.lowlevel.checkpoint_if_cancelled()

    async def _stop_child(self) -> None:
        child = self._child
        if child is None:
            return
        self._state.release_input()
        await self._pipes.close_input()
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
                await self._read_lines()
        except Exception:
            pass


def _pipes_for(kind: str) -> Pipes:
    """The pipes strategy for a child kind: raw fds, or anyio's process streams."""
    return ProcessStreams() if kind == "portable" else RawPipes(kind)
