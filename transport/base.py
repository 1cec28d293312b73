"""The interface every transport offers to the protocol layer."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

from .errors import ProcessExited

StderrCallback = Callable[[str], object]


@runtime_checkable
class Transport(Protocol):
    """A bidirectional line pipe to one CLI process.

    ``receive_lines`` returns every complete line one read produced (a batch, never
    empty) and raises `anyio.EndOfStream` once the CLI's output has ended.
    """

    on_stderr: StderrCallback | None

    async def start(self) -> None:
        """Start the CLI (or connect to it); `TransportError` if it cannot be started."""
        ...

    async def send(
        self, data: bytes | bytearray, *, guard: Callable[[], bool] | None = None
    ) -> bool:
        """Write whole lines; writers never interleave. With ``guard``: it is called right
        before each attempt to put the first byte of ``data`` into the pipe (the write lock
        held, nothing awaited between the call and the attempt), and as long as no byte of
        ``data`` has been written; once it returns False nothing of ``data`` is written and
        send returns False. Returns True once all of ``data`` was written.

        Raises `InputClosed` after `end_input`, `InputBroken` once an earlier write
        stopped part-way through a line, `ProcessExited` if the CLI is gone."""
        ...

    async def end_input(self) -> None:
        """Close the CLI's stdin after pending writes; idempotent."""
        ...

    async def receive_lines(self) -> list[bytes]:
        """Wait for and return the next batch of complete stdout lines."""
        ...

    async def wait_exit(self, timeout: float) -> int | None:
        """Wait up to ``timeout`` seconds for the CLI to exit; return its code or None."""
        ...

    def exit_error(self, detail: str) -> ProcessExited:
        """A `ProcessExited` for ``detail`` with what is known of the CLI now (its exit
        code, or that it still runs, and the last stderr lines)."""
        ...

    @property
    def returncode(self) -> int | None: ...

    @property
    def stderr_tail(self) -> Sequence[str]: ...

    async def aclose(self) -> None:
        """Stop the CLI and release everything; idempotent, bounded, from any task."""
        ...
