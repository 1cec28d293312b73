"""The CLI through ``anyio.open_process``: the portable (and Windows) implementation.

asyncio's pipes (Proactor pipes on Windows) or trio's, behind anyio's byte streams; the
child and its tree are handled by ``_child_portable``. Nothing here needs ``fcntl`` or a
POSIX-only signal.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Callable

import anyio
import anyio.abc

from . import _contain as contain
from ._backend import current
from ._child import Child
from ._child_portable import PortableChild, spawn_options
from .errors import TransportError
from .subprocess import READ_SIZE, Input, Output, SubprocessTransport, start_error

_OPEN = Input.OPEN
# What a write to a pipe whose reader is gone raises, depending on the backend.
_GONE = (anyio.BrokenResourceError, BrokenPipeError, ConnectionResetError)


class PortableTransport(SubprocessTransport):
    """`SubprocessTransport` on ``anyio.open_process``, for ``child="portable"``."""

    _process: anyio.abc.Process | None = None
    # On trio a cancelled send may have written part of its data; asyncio's streams
    # take all of it into their buffer before they can be cancelled.
    _cancel_breaks_input = True

    async def _spawn(self) -> Child:
        spawn = None
        try:
            spawn = contain.prepare(
                self.argv, self.contain, self.cwd, self.env, self.terminate_timeout
            )
            options = spawn_options()
            options["creationflags"] = options.get("creationflags", 0) | spawn.creationflags
            process = await anyio.open_process(
                spawn.argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=self.cwd,
                env=self.env,
                pass_fds=spawn.pass_fds,
                **options,
            )
        except (OSError, ValueError, TypeError) as exc:
            if spawn is not None:
                spawn.failed()
            raise start_error(self.argv[0], exc) from exc
        self._process = process
        self._cancel_breaks_input = current().NAME != "asyncio"
        return spawn.spawned(PortableChild(process))

    # -- stdin ------------------------------------------------------------------------

    async def send(
        self, data: bytes | bytearray, *, guard: Callable[[], bool] | None = None
    ) -> bool:
        async with self._send_lock:
            if self._input is not _OPEN:
                raise self._input_error()
            if guard is not None and not guard():
                return False
            assert self._process is not None and self._process.stdin is not None
            try:
                await self._process.stdin.send(bytes(data))
            except _GONE:
                await self.wait_exit(1.0)
                raise self.exit_error("cannot write to the CLI's stdin") from None
            except anyio.ClosedResourceError:
                raise self._input_error() from None
            except BaseException:
                if self._cancel_breaks_input and self._input is _OPEN:
                    self._input = Input.BROKEN
                raise
            return True

    async def _close_input(self, state: Input) -> None:
        if self._input is _OPEN or self._input is Input.BROKEN:
            self._input = state
            if self._process is not None and self._process.stdin is not None:
                with contextlib.suppress(Exception):
                    await self._process.stdin.aclose()

    # -- stdout -----------------------------------------------------------------------

    async def receive_lines(self) -> list[bytes]:
        process = self._process
        while True:
            if self._framer.error is not None:
                raise self._framer.error
            if process is None or process.stdout is None or self._output is Output.EOF:
                raise anyio.EndOfStream
            try:
                data = await process.stdout.receive(READ_SIZE)
            except anyio.EndOfStream:
                data = b""
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                if self._output is not Output.ORPHANED:
                    raise TransportError("the transport was closed") from None
                data = b""
            if not data:
                return self._last_lines()
            lines = self._framer.feed(data)
            if lines:
                return lines

    # -- stderr, orphaned pipes, closing -------------------------------------------------

    async def _read_stderr(self) -> None:
        assert self._process is not None and self._process.stderr is not None
        stderr = self._process.stderr
        try:
            while True:
                self._stderr.feed(await stderr.receive(65536), self.on_stderr)
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass
        finally:
            self._stderr.end(self.on_stderr)
            self._stderr_done.set()

    async def _orphan_stdout(self) -> None:
        if self._process is not None and self._process.stdout is not None:
            with contextlib.suppress(Exception):
                await self._process.stdout.aclose()

    async def _release(self) -> None:
        process = self._process
        if process is None:
            return
        if self._input is _OPEN or self._input is Input.BROKEN:
            self._input = Input.CLOSED
        with anyio.move_on_after(max(self.terminate_timeout, 1.0)):
            with contextlib.suppress(Exception):
                await process.aclose()  # closes the streams, waits for the (dead) child

    def _release_now(self) -> None:
        if self._input is _OPEN or self._input is Input.BROKEN:
            self._input = Input.CLOSED
