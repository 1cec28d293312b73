"""The CLI over raw non-blocking pipes: the Linux and other-POSIX implementations.

Both spawn with `subprocess.Popen` in a new process group and speak to the child over
``os.read``/``os.write`` on non-blocking pipes; they differ only in the `Child` that
watches and ends the process (``_child_linux`` or ``_child_posix``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
from collections.abc import Callable

import anyio
import anyio.lowlevel

from . import _contain as contain
from ._backend import ReadableWatch, Watch
from ._child import Child
from .errors import TransportError
from .subprocess import READ_SIZE, Input, Output, SubprocessTransport, start_error

logger = logging.getLogger(__name__)

# A read shorter than this means the CLI writes slower than we read (requests and
# answers, not a flood): wait for readiness next time instead of failing a read first.
SMALL_READ = 1 << 16
# Module constants: the hot paths compare against these without an Enum class lookup.
_OPEN, _BROKEN = Input.OPEN, Input.BROKEN
_READY, _DRAINED, _ORPHANED, _EOF = Output.READY, Output.DRAINED, Output.ORPHANED, Output.EOF


class PipeTransport(SubprocessTransport):
    """`SubprocessTransport` on raw pipes, for ``child="linux"`` and ``child="posix"``."""

    _stdin: int | None = None
    _stdout: int | None = None
    _stderr_fd: int | None = None
    _stdout_watch: Watch | None = None
    # What one read asks for: the pipe's capacity. Asking for much more than a pipe can
    # hold makes every read allocate a big buffer and shrink it, which fragments the heap.
    _read_size = READ_SIZE

    async def _spawn(self) -> Child:
        from ._child_posix import PosixChild

        child_class: type[PosixChild] = PosixChild
        if self.kind == "linux":
            from ._child_linux import LinuxChild

            child_class = LinuxChild
        fds: list[int] = []
        spawn = None
        try:
            spawn = contain.prepare(
                self.argv, self.contain, self.cwd, self.env, self.terminate_timeout
            )
            stdin_r, stdin_w = os.pipe()
            fds += (stdin_r, stdin_w)
            stdout_r, stdout_w = os.pipe()
            fds += (stdout_r, stdout_w)
            stderr_r, stderr_w = os.pipe()
            fds += (stderr_r, stderr_w)
            self._read_size = child_class.tune_pipe(stdout_r)
            # fork/exec returns at once; nothing here waits for the child.
            popen = subprocess.Popen(  # noqa: ASYNC220
                spawn.argv,
                stdin=stdin_r,
                stdout=stdout_w,
                stderr=stderr_w,
                cwd=self.cwd,
                env=self.env,
                close_fds=True,
                pass_fds=spawn.pass_fds,
                process_group=0,
            )
        except (OSError, ValueError, TypeError) as exc:
            # ValueError: a NUL byte in argv, env or cwd; TypeError: a value that is not
            # a string. Either way nothing was started, and the pipes must not leak.
            for fd in fds:
                os.close(fd)
            if spawn is not None:
                spawn.failed()
            raise start_error(self.argv[0], exc) from exc
        for fd in (stdin_r, stdout_w, stderr_w):
            os.close(fd)
        for fd in (stdin_w, stdout_r, stderr_r):
            os.set_blocking(fd, False)
        self._stdin, self._stdout, self._stderr_fd = stdin_w, stdout_r, stderr_r
        self._stdout_watch = ReadableWatch(stdout_r)
        return spawn.spawned(child_class(popen))

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
            rest = self._write_available(memoryview(data))
            if rest:
                lock.acquire_nowait()
                try:
                    if len(rest) == len(data):  # nothing written yet: the guard still rules
                        return await self._write_all(rest, guard, False)
                    return await self._write_all(rest, None, True)
                finally:
                    lock.release()
            return True
        except BrokenPipeError:
            await self.wait_exit(1.0)
            raise self.exit_error("cannot write to the CLI's stdin") from None

    def _ask(self, guard: Callable[[], bool]) -> bool:
        """The guard's answer, asked only if a write could happen now."""
        if self._input is not _OPEN:
            raise self._input_error()
        return guard()

    def _write_available(self, view: memoryview) -> memoryview:
        """Write what the pipe takes now; return what is left."""
        if self._input is not _OPEN:
            raise self._input_error()
        try:
            return view[os.write(self._stdin, view) :]  # type: ignore[arg-type]
        except BlockingIOError:
            return view

    async def _write_all(
        self, view: memoryview, guard: Callable[[], bool] | None, started: bool
    ) -> bool:
        """Write all of ``view``, waiting for room; ``started``: part of the line is out."""
        while True:
            if guard is not None and not self._ask(guard):
                return False
            rest = self._write_available(view)
            if not rest:
                return True
            if len(rest) < len(view):
                started, guard = True, None
            view = rest
            await self._wait_writable(started)

    async def _wait_writable(self, partial: bool) -> None:
        fd = self._stdin
        if fd is None:
            raise self._input_error()
        try:
            await anyio.wait_writable(fd)
        except anyio.ClosedResourceError:
            raise TransportError("the CLI's stdin was closed while writing") from None
        except BaseException as exc:
            if partial and self._input is _OPEN:
                self._input = _BROKEN
                logger.debug("stdin broken mid-line by %r", exc)
            raise

    async def _close_input(self, state: Input) -> None:
        fd, self._stdin = self._stdin, None
        if self._input is _OPEN or self._input is _BROKEN:
            self._input = state
        if fd is not None:
            anyio.notify_closing(fd)
            os.close(fd)

    # -- stdout -----------------------------------------------------------------------

    async def receive_lines(self) -> list[bytes]:
        waited = False
        while True:
            if self._framer.error is not None:
                raise self._framer.error
            fd = self._stdout
            if fd is None or self._output is _EOF:
                raise anyio.EndOfStream
            if self._output is _DRAINED:
                assert self._stdout_watch is not None
                try:
                    await self._stdout_watch.wait()
                except anyio.ClosedResourceError:
                    if self._output is not _ORPHANED:
                        raise TransportError("the transport was closed") from None
                waited = True
            try:
                data = os.read(fd, self._read_size)
            except BlockingIOError:
                if self._output is not _ORPHANED:
                    self._output = _DRAINED
                    continue
                data = b""
            else:
                if self._output is not _ORPHANED:
                    self._output = _DRAINED if len(data) < SMALL_READ else _READY
            if not data:
                return self._last_lines()
            lines = self._framer.feed(data)
            if lines:
                if not waited:
                    # Data was ready without waiting: yield once anyway, so a flood cannot
                    # starve handlers and consumers, without risking the lines just read.
                    await anyio.lowlevel.cancel_shielded_checkpoint()
                return lines
            await anyio.lowlevel.checkpoint()
            waited = True

    # -- stderr, orphaned pipes, closing -------------------------------------------------

    async def _read_stderr(self) -> None:
        fd = self._stderr_fd
        assert fd is not None
        try:
            while True:
                try:
                    data = os.read(fd, 65536)
                except BlockingIOError:
                    await anyio.wait_readable(fd)
                    continue
                if not data:
                    break
                self._stderr.feed(data, self.on_stderr)
        except anyio.ClosedResourceError:
            pass
        finally:
            self._stderr.end(self.on_stderr)
            self._stderr_done.set()

    async def _orphan_stdout(self) -> None:
        if self._stdout_watch is not None:
            self._stdout_watch.close()

    async def _release(self) -> None:
        self._release_now()

    def _release_now(self) -> None:
        with contextlib.suppress(OSError):
            fd, self._stdin = self._stdin, None
            if fd is not None:
                anyio.notify_closing(fd)
                os.close(fd)
        if self._input is _OPEN or self._input is _BROKEN:
            self._input = Input.CLOSED
        if self._stdout_watch is not None:
            self._stdout_watch.close()
        for name in ("_stdout", "_stderr_fd"):
            fd = getattr(self, name)
            if fd is not None:
                setattr(self, name, None)
                with contextlib.suppress(OSError):
                    anyio.notify_closing(fd)
                    os.close(fd)
        self._stdout_done.set()
