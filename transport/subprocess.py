"""The CLI as a child process, spoken to over raw non-blocking pipes."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence

import anyio
import anyio.lowlevel

from ._backend import DetachedTask, ReadableWatch
from ._lifecycle import AsyncResource
from .base import StderrCallback
from .errors import InputClosed, ProcessExited, TransportError
from .framing import DEFAULT_MAX_LINE_BYTES, LineFramer
from .stderr import StderrLines

logger = logging.getLogger(__name__)

READ_SIZE = 1 << 20
# A read shorter than this means the CLI writes slower than we read (requests and
# answers, not a flood): wait for readiness next time instead of failing a read first.
SMALL_READ = 1 << 16
PIPE_SIZE = 1 << 20
# After the CLI exits, how long its stdout/stderr may stay open (held by a descendant
# that inherited them) before we stop waiting for their EOF.
ORPHANED_PIPE_GRACE = 0.5


class SubprocessTransport(AsyncResource):
    """Runs ``argv`` (never through a shell) in its own process group and frames its stdout.

    Use as an async context manager. stderr is read concurrently into lines, passed to
    ``on_stderr`` and kept (the last ``stderr_lines``) for error messages. `aclose` closes
    stdin, waits ``close_timeout`` seconds for the CLI to exit, then sends SIGTERM and
    finally SIGKILL to the whole group, always reaping the child; any task may call it.
    """

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
    ) -> None:
        if isinstance(argv, str | bytes) or not argv:
            raise TypeError("argv must be a non-empty list of arguments, not a string")
        self.argv = [os.fspath(a) for a in argv]
        self.cwd = cwd
        self.env = dict(env) if env is not None else None
        self.on_stderr = on_stderr
        self.close_timeout = close_timeout
        self.terminate_timeout = terminate_timeout
        self._framer = LineFramer(max_line_bytes)
        self._stderr = StderrLines(stderr_lines)
        self._popen: subprocess.Popen[bytes] | None = None
        self._stdin: int | None = None
        self._stdout: int | None = None
        self._stdout_watch: ReadableWatch | None = None
        self._stderr_fd: int | None = None
        self._pidfd: int | None = None
        self._returncode: int | None = None
        self._reaped = False
        self._stdout_eof = False
        self._stdout_orphaned = False
        self._stdout_drained = False  # the last read was short: wait before the next
        self._write_broken = False
        self._send_lock = anyio.Lock(fast_acquire=True)
        self._exited = anyio.Event()
        self._stdout_done = anyio.Event()
        self._stderr_done = anyio.Event()
        self._closed = anyio.Event()
        self._closing = False
        self._background = DetachedTask(self._watch, name=f"ctlwire stderr/exit {self.argv[0]}")

    # -- life cycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Spawn the child. Raises `TransportError` if it cannot be started."""
        if self._popen is not None:
            raise RuntimeError("transport already started")
        fds: list[int] = []
        try:
            stdin_r, stdin_w = os.pipe()
            fds += (stdin_r, stdin_w)
            stdout_r, stdout_w = os.pipe()
            fds += (stdout_r, stdout_w)
            stderr_r, stderr_w = os.pipe()
            fds += (stderr_r, stderr_w)
            with contextlib.suppress(OSError):  # best effort: fewer, larger reads
                fcntl.fcntl(stdout_r, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
            # fork/exec returns at once; nothing here waits for the child.
            self._popen = subprocess.Popen(  # noqa: ASYNC220
                self.argv,
                stdin=stdin_r,
                stdout=stdout_w,
                stderr=stderr_w,
                cwd=self.cwd,
                env=self.env,
                close_fds=True,
                process_group=0,
            )
        except OSError as exc:
            for fd in fds:
                os.close(fd)
            raise TransportError(f"cannot start {self.argv[0]!r}: {exc}") from exc
        for fd in (stdin_r, stdout_w, stderr_w):
            os.close(fd)
        for fd in (stdin_w, stdout_r, stderr_r):
            os.set_blocking(fd, False)
        self._stdin, self._stdout, self._stderr_fd = stdin_w, stdout_r, stderr_r
        self._stdout_watch = ReadableWatch(stdout_r)
        if hasattr(os, "pidfd_open"):
            with contextlib.suppress(OSError):
                self._pidfd = os.pidfd_open(self._popen.pid)
        logger.debug("started %s as pid %d", self.argv, self._popen.pid)
        self._background.start()

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen is not None else None

    @property
    def returncode(self) -> int | None:
        """The exit code (negative: killed by that signal), or None while running."""
        return self._returncode

    @property
    def stderr_tail(self) -> list[str]:
        return list(self._stderr.tail)

    def exit_error(self, detail: str) -> ProcessExited:
        """A `ProcessExited` for ``detail`` with what is known of the child now."""
        return ProcessExited(self._returncode, self.stderr_tail, detail)

    async def wait_exit(self, timeout: float) -> int | None:
        with anyio.move_on_after(timeout):
            await self._exited.wait()
            await self._stderr_done.wait()
        return self._returncode

    # -- stdin ------------------------------------------------------------------------

    async def send(
        self, data: bytes | bytearray, *, guard: Callable[[], bool] | None = None
    ) -> bool:
        """Write whole lines. When no other write is part-way through and the pipe has
        room, this writes at once without taking the lock (and without a checkpoint)."""
        lock = self._send_lock
        try:
            if lock.locked():
                async with lock:
                    if guard is not None and not guard():
                        return False
                    await self._write_all(memoryview(data), started=False)
                return True
            if guard is not None and not guard():
                return False
            # Nothing below awaits before the lock is held, so lines cannot interleave.
            rest = self._write_available(memoryview(data))
            if rest:
                lock.acquire_nowait()
                try:
                    await self._write_all(rest, started=len(rest) < len(data))
                finally:
                    lock.release()
            return True
        except BrokenPipeError:
            await self.wait_exit(1.0)
            raise self.exit_error("cannot write to the CLI's stdin") from None

    def _write_available(self, view: memoryview) -> memoryview:
        """Write what the pipe takes now; return what is left."""
        fd = self._stdin
        if fd is None:
            raise InputClosed("cannot write: the CLI's stdin is already closed")
        if self._write_broken:
            raise TransportError(
                "cannot write: an earlier write was cancelled part-way through a line"
            )
        try:
            return view[os.write(fd, view) :]
        except BlockingIOError:
            return view

    async def _write_all(self, view: memoryview, started: bool) -> None:
        size = len(view)
        while True:
            view = self._write_available(view)
            if not view:
                return
            await self._wait_writable(partial=started or len(view) < size)

    async def _wait_writable(self, partial: bool) -> None:
        fd = self._stdin
        if fd is None:
            raise TransportError("the CLI's stdin was closed while writing")
        try:
            await anyio.wait_writable(fd)
        except anyio.ClosedResourceError:
            raise TransportError("the CLI's stdin was closed while writing") from None
        except BaseException:
            if partial:
                self._write_broken = True
            raise

    async def end_input(self) -> None:
        async with self._send_lock:
            self._close_stdin()

    def _close_stdin(self) -> None:
        fd, self._stdin = self._stdin, None
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
            if fd is None or self._stdout_eof:
                raise anyio.EndOfStream
            if self._stdout_drained and not self._stdout_orphaned:
                assert self._stdout_watch is not None
                try:
                    await self._stdout_watch.wait()
                except anyio.ClosedResourceError:
                    if not self._stdout_orphaned:
                        raise TransportError("the transport was closed") from None
                waited = True
            try:
                data = os.read(fd, READ_SIZE)
            except BlockingIOError:
                if not self._stdout_orphaned:
                    self._stdout_drained = True
                    continue
                data = b""
            else:
                self._stdout_drained = len(data) < SMALL_READ
            if not data:
                self._stdout_eof = True
                self._stdout_done.set()
                lines = self._framer.end()
                if lines:
                    return lines
                raise anyio.EndOfStream
            lines = self._framer.feed(data)
            if lines:
                if not waited:
                    # Data was ready without waiting: yield once anyway, so a flood cannot
                    # starve handlers and consumers, without risking the lines just read.
                    await anyio.lowlevel.cancel_shielded_checkpoint()
                return lines
            await anyio.lowlevel.checkpoint()
            waited = True

    # -- background: stderr and exit ----------------------------------------------------

    async def _watch(self) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._read_stderr)
            await self._wait_for_exit()
            with anyio.move_on_after(ORPHANED_PIPE_GRACE):
                await self._stdout_done.wait()
                await self._stderr_done.wait()
            # A descendant still holds the pipes open: stop waiting for their EOF.
            if not self._stdout_done.is_set() and self._stdout_watch is not None:
                self._stdout_orphaned = True
                self._stdout_watch.close()
            tg.cancel_scope.cancel()

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

    async def _wait_for_exit(self) -> None:
        pid = self.pid
        assert pid is not None
        if self._pidfd is not None:
            with contextlib.suppress(anyio.ClosedResourceError):
                await anyio.wait_readable(self._pidfd)
        delay = 0.001
        while not self._poll_exit(pid):
            await anyio.sleep(delay)  # no pidfd on this system: poll with back-off
            delay = min(delay * 2, 0.05)
        logger.debug("pid %d exited with %s", pid, self._returncode)
        self._exited.set()

    def _poll_exit(self, pid: int) -> bool:
        """Read the exit status without reaping, so the process group stays ours to kill."""
        try:
            info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:  # somebody else reaped it
            self._returncode, self._reaped = 255, True
            return True
        if info is None:
            return False
        if info.si_code == os.CLD_EXITED:
            self._returncode = info.si_status
        else:
            self._returncode = -info.si_status
        return True

    # -- closing ----------------------------------------------------------------------

    async def aclose(self) -> None:
        if self._closing:
            await self._closed.wait()
            return
        self._closing = True
        try:
            with anyio.CancelScope(shield=True):
                await self._stop_child()
                self._background.cancel()
                await self._background.wait()
        finally:
            # Reached with the work above undone only if a raw asyncio cancel pierced the
            # shield: fall back to blocking calls, which are short after SIGKILL.
            self._reap(force=True)
            self._close_fds()
            self._closed.set()
        await anyio.lowlevel.checkpoint_if_cancelled()

    async def _stop_child(self) -> None:
        if self._popen is None:
            return
        self._close_stdin()
        if not await self._drain_until_exit(self.close_timeout):
            logger.debug("pid %d ignored stdin EOF; sending SIGTERM", self._popen.pid)
            self._signal_group(signal.SIGTERM)
            if not await self._drain_until_exit(self.terminate_timeout):
                logger.warning("pid %d ignored SIGTERM; sending SIGKILL", self._popen.pid)
                self._signal_group(signal.SIGKILL)
                await self._drain_until_exit(self.terminate_timeout)
        self._reap(force=False)

    async def _drain_until_exit(self, timeout: float) -> bool:
        """Wait for exit while discarding stdout, so a CLI blocked on writing can finish."""
        with anyio.move_on_after(timeout):
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._discard_stdout)
                await self._exited.wait()
                tg.cancel_scope.cancel()
        return self._exited.is_set()

    async def _discard_stdout(self) -> None:
        with contextlib.suppress(Exception):
            while True:
                await self.receive_lines()

    def _signal_group(self, sig: signal.Signals) -> None:
        if self._popen is None or self._reaped:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._popen.pid, sig)

    def _reap(self, force: bool) -> None:
        """Kill what is left of the group, then collect the child's exit status."""
        if self._popen is None or self._reaped:
            return
        if force and not self._exited.is_set():
            self._signal_group(signal.SIGKILL)
        elif not self._exited.is_set():
            return
        # The leader is a zombie (or dying), so the group id cannot have been reused:
        # take its leftovers (descendants that outlived it) down with it.
        self._signal_group(signal.SIGKILL)
        try:
            _, status = os.waitpid(self._popen.pid, 0)
            if self._returncode is None:
                self._returncode = os.waitstatus_to_exitcode(status)
        except ChildProcessError:
            pass
        self._reaped = True
        self._popen.returncode = self._returncode
        self._exited.set()

    def _close_fds(self) -> None:
        self._close_stdin()
        if self._stdout_watch is not None:
            self._stdout_watch.close()
        for name in ("_stdout", "_stderr_fd", "_pidfd"):
            fd = getattr(self, name)
            if fd is not None:
                setattr(self, name, None)
                with contextlib.suppress(OSError):
                    anyio.notify_closing(fd)
                    os.close(fd)
        self._stdout_done.set()
