"""Typed errors of the transport layer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class CtlwireError(Exception):
    """The base of every error ctlwire raises on purpose (transport and protocol)."""

    def __reduce__(self) -> tuple[Any, ...]:
        # Subclasses take arguments of their own, not the message: rebuild from the state
        # (so errors survive pickling across processes, and copying). OSError keeps its
        # file names outside ``args``; its own reduce puts them back in.
        args = OSError.__reduce__(self)[1] if isinstance(self, OSError) else self.args
        return _rebuild, (type(self), args, self.__dict__)


def _rebuild(cls: type[CtlwireError], args: tuple[Any, ...], state: dict[str, Any]) -> Any:
    error = cls.__new__(cls, *args)
    (OSError.__init__ if issubclass(cls, OSError) else Exception.__init__)(error, *args)
    error.__dict__.update(state)
    return error


class TransportError(CtlwireError):
    """The byte pipe to the CLI failed or was closed."""


class InputClosed(TransportError):
    """A write after `end_input`: we closed the CLI's stdin on purpose. (A write after
    `aclose` is a plain `TransportError`: the transport is gone, not just the input.)"""


class InputBroken(TransportError):
    """An earlier write stopped part-way through a line, so the CLI's stdin holds half a
    line and no later write can be framed; the message says why."""


class LineTooLong(TransportError):
    """A line exceeded the size limit; the stream cannot be resynchronised."""

    def __init__(self, limit: int, size: int) -> None:
        super().__init__(
            f"line exceeds max_line_bytes: at least {size} bytes seen, limit is {limit} bytes"
        )
        self.limit = limit
        self.size = size


class ProcessExited(TransportError):
    """The CLI process ended (or closed its end of a pipe); carries its exit code and stderr."""

    def __init__(
        self, returncode: int | None, stderr_tail: Sequence[str] = (), detail: str = ""
    ) -> None:
        if returncode is None:
            what = "the CLI process is still running"
        elif returncode < 0:
            what = f"the CLI process was killed by signal {-returncode}"
        else:
            what = f"the CLI process exited with code {returncode}"
        text = f"{detail}: {what}" if detail else what
        if stderr_tail:
            text += "; last stderr lines:\n" + "\n".join(f"  {line}" for line in stderr_tail)
        super().__init__(text)
        self.returncode = returncode
        self.stderr_tail = tuple(stderr_tail)


def start_error(program: str, exc: Exception) -> TransportError:
    """What starting a transport raises when the child cannot be spawned."""
    if isinstance(exc, OSError):
        return TransportError(f"cannot start {program!r}: {exc}")
    # Popen's ValueError (a NUL byte) or TypeError (a value that is not a string).
    return TransportError(
        f"cannot start {program!r}: bad argv, env or cwd: {type(exc).__name__}: {exc}"
    )
