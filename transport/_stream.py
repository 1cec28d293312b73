"""Where a subprocess transport's stdin, stdout and life stand: the rules, with no I/O.

`StreamState` answers what `SubprocessTransport` may do next (write, wait before a
read, treat a read as the end) and records what happened; it never touches a pipe, a
process or a task, so each rule is tested one step at a time.
"""

from __future__ import annotations

import enum

from .errors import InputBroken, InputClosed, TransportError

# A read shorter than this means the CLI writes slower than we read (requests and
# answers, not a flood): wait for readiness next time instead of failing a read first.
SMALL_READ = 1 << 16


class Input(enum.Enum):
    """The CLI's stdin, as we see it."""

    OPEN = "open"
    BROKEN = "broken"  # a write stopped part-way through a line: refuse later writes
    CLOSED = "closed"  # closed by end_input: writes raise InputClosed
    RELEASED = "released"  # closed by aclose: the transport is going away


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


# Module constants: the hot paths compare against these without an Enum class lookup.
_OPEN, _BROKEN = Input.OPEN, Input.BROKEN
_READY, _DRAINED, _ORPHANED, _EOF = Output.READY, Output.DRAINED, Output.ORPHANED, Output.EOF


class StreamState:
    """The Input, Output and Life rules of one transport."""

    __slots__ = ("input", "life", "output")

    def __init__(self) -> None:
        self.input = Input.OPEN
        self.output = Output.READY
        self.life = Life.NEW

    # -- life -------------------------------------------------------------------------

    def start(self) -> None:
        """NEW -> RUNNING; a second start is a `RuntimeError`."""
        if self.life is not Life.NEW:
            raise RuntimeError("transport already started")
        self.life = Life.RUNNING

    def begin_close(self) -> bool:
        """-> CLOSING; False if a close already began (the caller waits for it)."""
        if self.life is Life.CLOSING or self.life is Life.CLOSED:
            return False
        self.life = Life.CLOSING
        return True

    def closed(self) -> None:
        """The close is done: stdin is released and stdout reads end."""
        self.release_input()
        self.output = _EOF
        self.life = Life.CLOSED

    # -- stdin ------------------------------------------------------------------------

    def write_error(self) -> TransportError:
        """Why stdin refuses writes, once `input` is no longer OPEN."""
        state = self.input
        if state is Input.CLOSED:
            return InputClosed("cannot write: the CLI's stdin is already closed")
        if state is _BROKEN:
            return InputBroken(
                "cannot write: the stream to the CLI is broken: an earlier write was"
                " cancelled part-way through a line"
            )
        return TransportError("cannot write: the transport is closed")

    def break_input(self) -> bool:
        """A write stopped part-way through a line: OPEN -> BROKEN. True if it was open."""
        if self.input is _OPEN:
            self.input = _BROKEN
            return True
        return False

    def end_input(self) -> None:
        """`end_input`: an open (or broken) stdin becomes CLOSED."""
        if self.input is _OPEN or self.input is _BROKEN:
            self.input = Input.CLOSED

    def release_input(self) -> None:
        """`aclose`: an open (or broken) stdin becomes RELEASED."""
        if self.input is _OPEN or self.input is _BROKEN:
            self.input = Input.RELEASED

    # -- stdout -----------------------------------------------------------------------

    @property
    def must_wait(self) -> bool:
        """Whether the next read should first wait for stdout to be readable."""
        return self.output is _DRAINED

    def read(self, size: int) -> None:
        """A read returned ``size`` (> 0) bytes: a short one means wait before the next."""
        if self.output is not _ORPHANED:
            self.output = _DRAINED if size < SMALL_READ else _READY

    def would_block(self) -> bool:
        """A read found nothing yet. True: wait and read again; False: an orphaned
        stdout, read as its end (never wait for a descendant's EOF)."""
        if self.output is _ORPHANED:
            return False
        self.output = _DRAINED
        return True

    def orphan(self) -> None:
        """The CLI exited while a descendant still holds its stdout open."""
        if self.output is not _EOF:
            self.output = _ORPHANED

    @property
    def orphaned(self) -> bool:
        return self.output is _ORPHANED

    def ended(self) -> None:
        """stdout reached its end."""
        self.output = _EOF

    @property
    def at_end(self) -> bool:
        return self.output is _EOF
