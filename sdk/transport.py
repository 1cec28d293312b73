"""`CtlwireTransport`: the official SDK's `Transport`, run on ctlwire's subprocess pipe."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
from claude_agent_sdk import (
    ClaudeAgentOptions,
    CLIConnectionError,
    CLINotFoundError,
    ProcessError,
    Transport,
)

from ctlwire.transport import (
    DEFAULT_MAX_LINE_BYTES,
    InputClosed,
    LineTooLong,
    SubprocessTransport,
    TransportError,
)

from .errors import BadCLIOutput
from .launch import Launch, Prompt, build_launch
from .lines import decode_message

logger = logging.getLogger(__name__)

# After stdout ends, how long to wait for the CLI's exit code before reporting none.
EXIT_WAIT = 5.0


class CtlwireTransport(Transport):
    """The SDK's transport contract over ctlwire's `SubprocessTransport`.

    ``CtlwireTransport(prompt, options)`` takes what the SDK's own subprocess transport
    takes and starts the same command, so the swap is one argument:
    ``query(prompt=p, options=o, transport=CtlwireTransport(p, o))``. What changes: a
    line may be ``options.max_buffer_size`` bytes (32 MiB when unset), `close` ends the
    CLI's whole process group from any task within a bounded time, and bad output raises
    SDK-typed errors that name the fault.
    """

    def __init__(self, prompt: Prompt, options: ClaudeAgentOptions) -> None:
        limit = options.max_buffer_size
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)):
            raise TypeError(f"options.max_buffer_size must be an int, not {limit!r}")
        if limit is not None and limit < 1:
            raise ValueError(f"options.max_buffer_size must be at least 1, not {limit}")
        self._prompt = prompt
        self._options = options
        self.max_line_bytes = limit if limit is not None else DEFAULT_MAX_LINE_BYTES
        self._pipe: SubprocessTransport | None = None
        self._ready = False
        self._closed = False

    @property
    def pid(self) -> int | None:
        """The id of the process started once connected: the CLI, or the supervisor
        that contains it (see `ctlwire.transport.SubprocessTransport.pid`)."""
        return self._pipe.pid if self._pipe is not None else None

    async def connect(self) -> None:
        """Start the CLI; `CLINotFoundError` if it is missing, else `CLIConnectionError`."""
        if self._closed:
            raise CLIConnectionError("this CtlwireTransport is closed; make a new one")
        if self._pipe is not None:
            return
        launch = await build_launch(self._prompt, self._options)
        if self._closed:  # closed by another task meanwhile
            raise CLIConnectionError("this CtlwireTransport was closed while connecting")
        if launch.user is not None:
            raise CLIConnectionError(
                f"CtlwireTransport cannot start the CLI as another user "
                f"(options.user={launch.user!r}); use the SDK's own transport for that"
            )
        pipe = SubprocessTransport(
            launch.argv,
            cwd=launch.cwd,
            env=launch.env,
            on_stderr=self._stderr_line if self._options.stderr is not None else None,
            max_line_bytes=self.max_line_bytes,
        )
        try:
            await pipe.start()
        except TransportError as exc:
            await pipe.aclose()
            raise _start_error(launch, exc) from exc
        except BaseException:
            await pipe.aclose()
            raise
        # Only a started pipe is handed to close(), so a close from another task while
        # this one was starting the CLI is seen here, and the CLI ended.
        self._pipe = pipe
        if self._closed:
            await pipe.aclose()
            raise CLIConnectionError("this CtlwireTransport was closed while connecting")
        self._ready = True

    def _stderr_line(self, line: str) -> None:
        text = line.rstrip()
        if text and self._options.stderr is not None:
            self._options.stderr(text)

    async def write(self, data: str) -> None:
        pipe = self._pipe
        if pipe is None or not self._ready:
            raise CLIConnectionError("cannot write: the CLI is not connected (or was closed)")
        try:
            await pipe.send(data.encode())
        except UnicodeEncodeError as exc:
            raise CLIConnectionError(f"cannot write: the text is not valid Unicode: {exc}") from exc
        except InputClosed as exc:
            raise CLIConnectionError("cannot write: end_input closed the CLI's stdin") from exc
        except TransportError as exc:
            self._ready = False
            raise CLIConnectionError(f"cannot write to the CLI: {exc}") from exc

    async def end_input(self) -> None:
        if self._pipe is not None:
            try:
                await self._pipe.end_input()
            except TransportError as exc:
                logger.debug("end_input: %s", exc)

    def read_messages(self) -> AsyncIterator[dict[str, Any]]:
        return self._messages()

    async def _messages(self) -> AsyncIterator[dict[str, Any]]:
        pipe = self._pipe
        if pipe is None or self._closed:
            raise CLIConnectionError("cannot read: the CLI is not connected (or was closed)")
        while True:
            try:
                lines = await pipe.receive_lines()
            except anyio.EndOfStream:
                break
            except LineTooLong as exc:
                raise BadCLIOutput(
                    f"a JSON message exceeded the maximum buffer size of {exc.limit} bytes"
                    " (options.max_buffer_size)",
                    "",
                    exc,
                ) from exc
            except TransportError as exc:
                if self._closed:
                    return
                raise CLIConnectionError(f"cannot read from the CLI: {exc}") from exc
            for line in lines:
                message = decode_message(line)
                if message is not None:
                    yield message
        code = await pipe.wait_exit(EXIT_WAIT)
        if code and not self._closed:
            raise ProcessError(
                "the CLI failed", exit_code=code, stderr="\n".join(pipe.stderr_tail) or None
            )

    async def close(self) -> None:
        """End the CLI's process group and release everything; bounded, idempotent and
        safe from any task (a raw asyncio cancel included)."""
        self._ready = False
        self._closed = True
        if self._pipe is not None:
            await self._pipe.aclose()

    def is_ready(self) -> bool:
        return self._ready


def _start_error(launch: Launch, exc: TransportError) -> CLIConnectionError:
    """The SDK's error for a CLI that could not be started."""
    cause = exc.__cause__
    if isinstance(cause, FileNotFoundError):
        if launch.cwd is not None and not Path(launch.cwd).is_dir():
            return CLIConnectionError(f"Working directory does not exist: {launch.cwd}")
        return CLINotFoundError("Claude Code not found", launch.argv[0])
    return CLIConnectionError(f"Failed to start Claude Code: {exc}")
