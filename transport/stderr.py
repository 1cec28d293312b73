"""Sans-IO stderr splitter: free text in, bounded lines out, and the tail kept for errors."""

from __future__ import annotations

import logging
from collections import deque

from .base import StderrCallback

logger = logging.getLogger(__name__)

MAX_STDERR_LINE = 64 * 1024


class StderrLines:
    """Splits stderr bytes into text lines, keeps the last ``keep`` and reports each one."""

    def __init__(self, keep: int = 50) -> None:
        self.tail: deque[str] = deque(maxlen=keep)
        self._partial = bytearray()

    def feed(self, data: bytes, on_line: StderrCallback | None) -> None:
        self._partial += data
        while True:
            end = self._partial.find(b"\n")
            if end < 0:
                if len(self._partial) > MAX_STDERR_LINE:  # no newline in sight: cut it
                    end = MAX_STDERR_LINE
                else:
                    return
                line = bytes(self._partial[:end])
                del self._partial[:end]
            else:
                line = bytes(self._partial[:end])
                del self._partial[: end + 1]
            self._deliver(line, on_line)

    def end(self, on_line: StderrCallback | None) -> None:
        if self._partial:
            line = bytes(self._partial)
            self._partial.clear()
            self._deliver(line, on_line)

    def _deliver(self, raw: bytes, on_line: StderrCallback | None) -> None:
        text = raw.decode("utf-8", errors="replace").rstrip("\r")
        self.tail.append(text)
        if on_line is not None:
            try:
                on_line(text)
            except Exception:
                logger.exception("on_stderr callback raised; stderr reading goes on")
