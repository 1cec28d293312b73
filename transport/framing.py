"""Sans-IO line framing: bytes in, complete lines out, memory bounded by the line limit."""

from __future__ import annotations

from .errors import LineTooLong

DEFAULT_MAX_LINE_BYTES = 32 * 2**20
SMALL_CHUNK = 1 << 18
BIG_CHUNK = 1 << 22


class LineFramer:
    """Splits a byte stream on ``\\n`` into lines.

    Works on bytes only and looks at each byte once; drops blank lines; strips the
    ``\\r`` of a CRLF. A line longer than ``max_line_bytes`` (counted on the bytes before
    its ``\\n``) raises `LineTooLong` as soon as that many bytes are pending, so memory
    stays bounded by the limit. After that error the framer stays failed.
    """

    __slots__ = ("_chunks", "_failed", "_limit", "_pending")

    def __init__(self, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> None:
        if max_line_bytes < 1:
            raise ValueError("max_line_bytes must be positive")
        self._limit = max_line_bytes
        # The partial line as a list of chunks, joined once when the line completes, so
        # a huge line arriving in many reads costs O(size), never a quadratic re-copy.
        self._chunks: list[bytes | bytearray] = []
        self._pending = 0
        self._failed: LineTooLong | None = None

    @property
    def max_line_bytes(self) -> int:
        return self._limit

    @property
    def error(self) -> LineTooLong | None:
        """The failure waiting to be raised, once a line was too long."""
        return self._failed

    @property
    def buffered(self) -> int:
        """Bytes of the partial line held so far."""
        return self._pending

    def feed(self, data: bytes) -> list[bytes]:
        """Add ``data``; return the lines it completed, in order.

        Lines that precede an over-long one are returned first; the `LineTooLong`
        comes from the next call.
        """
        if self._failed is not None:
            raise self._failed
        lines: list[bytes] = []
        try:
            self._split(data, lines)
        except LineTooLong:
            if lines:
                return lines
            raise
        return lines

    def _split(self, data: bytes, lines: list[bytes]) -> None:
        held = self._chunks
        if held:
            end = data.find(b"\n")
            if end < 0:
                self._hold(data)
                return
            self._check(self._pending + end)
        parts = data.split(b"\n")
        tail = parts.pop()
        if parts:
            carriage = b"\r" in data
            if held:  # the first part completes the held line
                held.append(parts[0])
                parts[0] = self._take_held()
                carriage = carriage or parts[0].endswith(b"\r")
            # Only a chunk longer than the limit can hold an over-long line past the first.
            if len(data) > self._limit and max(map(len, parts)) > self._limit:
                first_bad = next(i for i, p in enumerate(parts) if len(p) > self._limit)
                lines.extend(filter(None, (p.removesuffix(b"\r") for p in parts[:first_bad])))
                self._check(len(parts[first_bad]))
            if carriage:
                parts = [p[:-1] if p.endswith(b"\r") else p for p in parts]
            lines.extend(filter(None, parts))
        if tail:
            self._hold(tail)

    def end(self) -> list[bytes]:
        """Signal end of input; return the final line if it had no terminator."""
        if self._failed is not None:
            raise self._failed
        line = self._take_held().removesuffix(b"\r")
        return [line] if line else []

    def _hold(self, data: bytes) -> None:
        self._check(self._pending + len(data))
        self._pending += len(data)
        chunks = self._chunks
        if len(data) < SMALL_CHUNK:
            # Small reads (a 64 KiB pipe) are gathered into one growing buffer: a huge
            # line held as thousands of small objects fragments the C heap for good.
            if chunks and type(last := chunks[-1]) is bytearray and len(last) < BIG_CHUNK:
                last += data
            else:
                chunks.append(bytearray(data))
        else:
            chunks.append(data)

    def _take_held(self) -> bytes:
        """The held partial line, joined once; nothing is held after."""
        line = b"".join(self._chunks)
        self._chunks.clear()
        self._pending = 0
        return line

    def _check(self, size: int) -> None:
        if size > self._limit:
            self._chunks.clear()
            self._pending = 0
            self._failed = LineTooLong(self._limit, size)
            raise self._failed
