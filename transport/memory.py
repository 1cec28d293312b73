"""An in-memory transport pair: the SDK side and a scripted CLI side, for unit tests."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import anyio
import anyio.lowlevel
import msgspec

from ._lifecycle import AsyncResource
from .base import StderrCallback
from .errors import InputClosed, ProcessExited
from .framing import DEFAULT_MAX_LINE_BYTES, LineFramer
from .stderr import StderrLines

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


class MemoryTransport(AsyncResource):
    """The SDK side: the same interface as `SubprocessTransport`, no process behind it."""

    def __init__(
        self,
        peer: MemoryPeer,
        on_stderr: StderrCallback | None = None,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    ) -> None:
        self._peer = peer
        self.on_stderr = on_stderr
        self._framer = LineFramer(max_line_bytes)
        self._stderr = StderrLines()
        self._input_closed = False

    async def start(self) -> None:
        """Nothing to start: the peer is already there."""

    async def send(
        self, data: bytes | bytearray, *, guard: Callable[[], bool] | None = None
    ) -> bool:
        await anyio.lowlevel.checkpoint_if_cancelled()
        if self._input_closed:
            raise InputClosed("cannot write: the CLI's stdin is already closed")
        if self._peer.returncode is not None:
            raise self._peer.exit_error("cannot write to the CLI's stdin")
        if guard is not None and not guard():
            return False
        self._peer._inbox_send.send_nowait(bytes(data))  # the inbox is unbounded
        await anyio.lowlevel.cancel_shielded_checkpoint()
        return True

    async def end_input(self) -> None:
        if not self._input_closed:
            self._input_closed = True
            self._peer._inbox_send.close()

    async def receive_lines(self) -> list[bytes]:
        while True:
            if self._framer.error is not None:
                raise self._framer.error
            try:
                data = await self._peer._outbox_receive.receive()
            except (anyio.EndOfStream, anyio.ClosedResourceError):
                lines = self._framer.end()
                if lines:
                    return lines
                raise anyio.EndOfStream from None
            if isinstance(data, str):
                self._stderr.feed(data.encode() + b"\n", self.on_stderr)
                continue
            lines = self._framer.feed(data)
            if lines:
                return lines

    def exit_error(self, detail: str) -> ProcessExited:
        return ProcessExited(self._peer.returncode, self.stderr_tail, detail)

    async def wait_exit(self, timeout: float) -> int | None:
        with anyio.move_on_after(timeout):
            await self._peer._exited.wait()
        return self._peer.returncode

    @property
    def returncode(self) -> int | None:
        return self._peer.returncode

    @property
    def stderr_tail(self) -> list[str]:
        return list(self._stderr.tail)

    async def aclose(self) -> None:
        await self.end_input()
        self._peer._outbox_receive.close()
        if self._peer.returncode is None:
            self._peer._finish(-9)


class MemoryPeer:
    """The CLI side: read what the SDK wrote, write stdout lines and stderr, exit."""

    def __init__(self, max_buffered_chunks: float = math.inf) -> None:
        self._inbox_send, self._inbox_receive = anyio.create_memory_object_stream[bytes](
            max_buffer_size=math.inf
        )
        self._outbox_send, self._outbox_receive = anyio.create_memory_object_stream[bytes | str](
            max_buffer_size=max_buffered_chunks
        )
        self._framer = LineFramer()
        self._lines: list[bytes] = []
        self._stderr_lines: list[str] = []
        self._exited = anyio.Event()
        self.returncode: int | None = None

    async def write(self, data: bytes) -> None:
        """Raw bytes to the SDK's stdout, e.g. half a line."""
        await self._outbox_send.send(data)

    async def send_frame(self, frame: Any) -> None:
        await self._outbox_send.send(_encode(frame) + b"\n")

    async def send_stderr(self, line: str) -> None:
        self._stderr_lines.append(line)
        await self._outbox_send.send(line)

    async def receive_line(self) -> bytes:
        """The next line the SDK wrote; `anyio.EndOfStream` after its stdin EOF."""
        while not self._lines:
            try:
                data = await self._inbox_receive.receive()
            except anyio.EndOfStream:
                self._lines.extend(self._framer.end())
                if not self._lines:
                    raise
                break
            self._lines.extend(self._framer.feed(data))
        return self._lines.pop(0)

    async def receive_frame(self) -> Any:
        return _decode(await self.receive_line())

    async def exit(self, code: int = 0) -> None:
        """Close stdout and end with ``code``, like a CLI process exiting."""
        self._outbox_send.close()
        self._finish(code)

    def _finish(self, code: int) -> None:
        if self.returncode is None:
            self.returncode = code
        self._exited.set()

    def exit_error(self, detail: str) -> ProcessExited:
        return ProcessExited(self.returncode, self._stderr_lines[-50:], detail)


def memory_transport_pair(
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES, on_stderr: StderrCallback | None = None
) -> tuple[MemoryTransport, MemoryPeer]:
    """A connected (SDK side, CLI side) pair."""
    peer = MemoryPeer()
    return MemoryTransport(peer, on_stderr, max_line_bytes), peer


__all__: Sequence[str] = ["MemoryPeer", "MemoryTransport", "memory_transport_pair"]
