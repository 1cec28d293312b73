"""The CLI's pipes through ``anyio.open_process``: the portable (and Windows) strategy.

asyncio's pipes (Proactor pipes on Windows) or trio's, behind anyio's byte streams, with
the same operations as the raw pipes of ``_pipes``; the child and its tree are handled
by ``_child_portable``. Nothing here needs ``fcntl`` or a POSIX-only signal.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Awaitable

import anyio
import anyio.abc

from ._backend import current
from ._child import Child
from ._child_portable import PortableChild, spawn_options
from ._contain import Containment
from .errors import start_error

READ_SIZE = 1 << 20
STDERR_READ_SIZE = 65536
# What a write to a pipe whose reader is gone raises, depending on the backend.
_GONE = (anyio.BrokenResourceError, BrokenPipeError, ConnectionResetError)


class ProcessStreams:
    """stdin, stdout and stderr of one child as anyio byte streams."""

    def __init__(self) -> None:
        self.process: anyio.abc.Process | None = None
        # On trio a cancelled send may have written part of its data; asyncio's streams
        # take all of it into their buffer before they can be cancelled.
        self.cancel_may_cut = True
        self._received: bytes | None = None  # read by `wait_readable`, not yet taken

    async def spawn(self, launch: Containment) -> Child:
        """Start ``launch`` in a group of its own, its three pipes ours; the one place a
        child is spawned on this strategy. `TransportError` if it cannot be."""
        options = spawn_options()
        options["creationflags"] = options.get("creationflags", 0) | launch.creationflags
        try:
            # Never half done: cancelled mid-spawn, asyncio would kill the process it
            # made (the supervisor, not the tree below it) and trio would lose its pipes.
            with anyio.CancelScope(shield=True):
                process = await anyio.open_process(
                    launch.argv,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    cwd=launch.cwd,
                    env=launch.env,
                    pass_fds=launch.pass_fds,
                    **options,
                )
        except (OSError, ValueError, TypeError) as exc:
            launch.failed()
            raise start_error(launch.program, exc) from exc
        except BaseException:
            launch.failed()
            raise
        self.process = process
        self.cancel_may_cut = current().NAME != "asyncio"
        child = PortableChild(process)
        launch.started(process.pid)
        return child

    # -- stdin ------------------------------------------------------------------------

    def try_write(self, view: memoryview) -> int:
        """Nothing goes out without awaiting here: always 0 (`wait_writable` writes)."""
        if self.process is None or self.process.stdin is None:
            raise anyio.ClosedResourceError
        return 0

    async def wait_writable(self, view: memoryview) -> int:
        """Write all of ``view`` (the stream takes a whole write); its length.
        `BrokenPipeError` if the reader is gone."""
        if self.process is None or self.process.stdin is None:
            raise anyio.ClosedResourceError
        try:
            await self.process.stdin.send(bytes(view))
        except _GONE:
            raise BrokenPipeError from None
        return len(view)

    async def close_input(self) -> None:
        if self.process is not None and self.process.stdin is not None:
            with contextlib.suppress(Exception):
                await self.process.stdin.aclose()

    # -- stdout -----------------------------------------------------------------------

    def read_now(self) -> bytes | None:
        """What `wait_readable` received (b"" at the end), or None if nothing yet."""
        if self.process is None or self.process.stdout is None:
            raise anyio.EndOfStream
        data, self._received = self._received, None
        return data

    def wait_readable(self) -> Awaitable[None]:
        """What to await to receive the next chunk for `read_now` (`anyio.ClosedResourceError`
        if stdout is orphaned or closed meanwhile); `anyio.EndOfStream` if it was closed."""
        if self.process is None or self.process.stdout is None:
            raise anyio.EndOfStream
        return self._receive(self.process.stdout)

    async def _receive(self, stdout: anyio.abc.ByteReceiveStream) -> None:
        try:
            self._received = await stdout.receive(READ_SIZE)
        except anyio.EndOfStream:
            self._received = b""
        except anyio.BrokenResourceError:
            raise anyio.ClosedResourceError from None

    async def orphan_stdout(self) -> None:
        """The CLI exited, a descendant holds stdout open: make reads end at once."""
        if self.process is not None and self.process.stdout is not None:
            with contextlib.suppress(Exception):
                await self.process.stdout.aclose()

    # -- stderr -----------------------------------------------------------------------

    async def read_stderr(self) -> bytes:
        """The next chunk of stderr; b"" at its end or once it is closed."""
        assert self.process is not None and self.process.stderr is not None
        try:
            return await self.process.stderr.receive(STDERR_READ_SIZE)
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            return b""

    # -- closing ----------------------------------------------------------------------

    async def close(self, timeout: float) -> None:
        """Close every stream and wait (up to ``timeout`` seconds) for the dead child."""
        process = self.process
        if process is None:
            return
        with anyio.move_on_after(timeout):
            with contextlib.suppress(Exception):
                await process.aclose()

    def close_now(self) -> None:
        """Nothing: anyio's streams close only by awaiting. This runs only when a cancel
        pierced `close`; the backend releases the pipes with its process object."""
