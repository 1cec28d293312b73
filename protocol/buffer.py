"""Unread message lines, in order: in memory up to a byte budget, past it in a temporary file.

The reader never stops for a consumer that does not read (control frames behind the
messages must still be served), so what the consumer has not taken must be kept
somewhere bounded: raw lines, not decoded dicts, and the overflow on disk.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections import deque
from typing import IO

from ctlwire.transport import CtlwireError

# What one queued line costs beyond its bytes (the bytes object and the deque slot).
LINE_OVERHEAD = 64
# How much of the spill file is read back at a time.
READ_BACK = 1 << 20


class SpillError(CtlwireError, OSError):
    """The overflow file could not be written or read."""


class MessageBuffer:
    """A FIFO of lines. Memory holds at most ``budget`` bytes (plus one line); the rest
    goes to an unnamed temporary file in ``spill_dir`` and comes back in order."""

    def __init__(self, budget: int, spill_dir: str | os.PathLike[str] | None = None) -> None:
        if budget < 1:
            raise ValueError(f"the message buffer budget must be positive, got {budget}")
        self.budget = budget
        self._spill_dir = spill_dir
        self._memory: deque[bytes] = deque()
        self._memory_bytes = 0
        self._file: IO[bytes] | None = None
        self._written = 0  # end of the spilled data in the file
        self._read = 0  # start of what was not read back yet
        self._spilled_lines = 0
        self._broken: SpillError | None = None
        self.peak_memory_bytes = 0

    def __len__(self) -> int:
        return len(self._memory) + self._spilled_lines

    def __bool__(self) -> bool:
        return bool(self._memory) or self._spilled_lines > 0

    @property
    def memory_bytes(self) -> int:
        return self._memory_bytes

    @property
    def spilled_bytes(self) -> int:
        return self._written - self._read

    def extend(self, lines: list[bytes]) -> None:
        """Queue lines after everything queued so far."""
        if not lines:
            return
        if self._broken is not None:
            raise self._broken
        if not self._spilled_lines:
            size = sum(map(len, lines)) + LINE_OVERHEAD * len(lines)
            if self._memory_bytes + size <= self.budget:
                self._keep(lines, size)
                return
            fit = self._fitting(lines, self.budget - self._memory_bytes)
            if fit:
                self._keep(lines[:fit], sum(map(len, lines[:fit])) + LINE_OVERHEAD * fit)
                lines = lines[fit:]
                if not lines:
                    return
        self._spill(lines)

    def _fitting(self, lines: list[bytes], room: int) -> int:
        """How many of the first lines fit in ``room`` bytes (one, if memory is empty)."""
        count = 0
        for line in lines:
            room -= len(line) + LINE_OVERHEAD
            if room < 0:
                break
            count += 1
        return count or (0 if self._memory else 1)

    def _keep(self, lines: list[bytes], size: int) -> None:
        self._memory.extend(lines)
        self._memory_bytes += size
        self.peak_memory_bytes = max(self.peak_memory_bytes, self._memory_bytes)

    def take(self, limit: int) -> list[bytes]:
        """Up to ``limit`` of the oldest lines (fewer only when fewer are queued)."""
        if not self._memory and self._spilled_lines:
            if self._broken is not None:
                raise self._broken
            self._read_back()
        memory = self._memory
        count = min(limit, len(memory))
        taken = [memory.popleft() for _ in range(count)]
        self._memory_bytes -= sum(map(len, taken)) + LINE_OVERHEAD * count
        return taken

    def close(self) -> None:
        """Drop everything and remove the overflow file; a closed buffer is empty."""
        self._memory.clear()
        self._memory_bytes = 0
        self._spilled_lines = self._written = self._read = 0
        if self._file is not None:
            with contextlib.suppress(OSError):  # a failed spill fails its flush again
                self._file.close()
            self._file = None

    def _spill(self, lines: list[bytes]) -> None:
        try:
            if self._file is None:
                # Lives until close(): the buffer owns it.
                self._file = tempfile.TemporaryFile(dir=self._spill_dir, prefix="ctlwire-")  # noqa: SIM115
            self._file.seek(self._written)
            data = b"\n".join(lines) + b"\n"
            self._file.write(data)
        except OSError as exc:
            self._broken = SpillError(
                exc.errno, f"cannot keep unread messages in a temporary file: {exc}"
            )
            raise self._broken from exc
        self._written += len(data)
        self._spilled_lines += len(lines)

    def _read_back(self) -> None:
        """Move the oldest spilled lines (about `READ_BACK` bytes, whole lines) to memory."""
        file = self._file
        assert file is not None
        try:
            file.flush()
            file.seek(self._read)
            chunk = file.read(min(READ_BACK, self.budget, self._written - self._read))
            while b"\n" not in chunk:  # one line longer than a read-back
                more = file.read(READ_BACK)
                if not more:
                    raise OSError(f"the spill file ends inside a line at {self._read}")
                chunk += more
        except OSError as exc:
            self._broken = SpillError(exc.errno, f"cannot read back unread messages: {exc}")
            raise self._broken from exc
        lines = chunk.split(b"\n")
        lines.pop()  # what follows the last newline: the start of a line left for later
        count = self._fitting(lines, self.budget)
        lines = lines[:count]
        size = sum(map(len, lines))
        self._read += size + count
        self._spilled_lines -= count
        self._keep(lines, size + LINE_OVERHEAD * count)
        if self._read == self._written:  # all back in memory: start the file afresh
            self._read = self._written = 0
            file.seek(0)
            file.truncate()
