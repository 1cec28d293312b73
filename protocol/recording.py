"""A transport wrapper that writes everything crossing it to a session log."""

from __future__ import annotations

import os
from collections.abc import Sequence

from ctlwire.transport import AsyncResource, LineFramer, StderrCallback, Transport

from .log import LogWriter


class RecordingTransport(AsyncResource):
    """Records lines in both directions, stderr, stdin EOF and the exit code.

    Wrap a transport that is not started yet; entering the recorder starts it::

        async with RecordingTransport(SubprocessTransport(argv), "session.jsonl") as t:
            async with ControlSession(t) as session: ...

    Secrets are redacted unless ``redact_secrets=False``; the file is created 0600.
    """

    def __init__(
        self,
        inner: Transport,
        log_path: str | os.PathLike[str],
        *,
        redact_secrets: bool = True,
        cli_version: str | None = None,
    ) -> None:
        self._inner = inner
        argv: Sequence[str] = getattr(inner, "argv", ())
        self.writer = LogWriter(log_path, argv, cli_version, redact_secrets)
        self._sent = LineFramer()
        self._eof_logged = False
        self._exit_logged = False
        self.on_stderr: StderrCallback | None = inner.on_stderr
        inner.on_stderr = self._record_stderr

    async def start(self) -> None:
        """Start the wrapped transport (if it has a start step)."""
        start = getattr(self._inner, "start", None)
        if start is not None:
            await start()

    def _record_stderr(self, line: str) -> None:
        self.writer.stderr(line)
        if self.on_stderr is not None:
            self.on_stderr(line)

    async def send(self, data: bytes | bytearray) -> None:
        for line in self._sent.feed(bytes(data)):
            self.writer.stdout_line("sdk", line)
        await self._inner.send(data)

    async def end_input(self) -> None:
        if not self._eof_logged:
            self._eof_logged = True
            self.writer.eof()
        await self._inner.end_input()

    async def receive_lines(self) -> list[bytes]:
        lines = await self._inner.receive_lines()
        for line in lines:
            self.writer.stdout_line("cli", line)
        return lines

    async def wait_exit(self, timeout: float) -> int | None:
        code = await self._inner.wait_exit(timeout)
        self._log_exit()
        return code

    @property
    def returncode(self) -> int | None:
        return self._inner.returncode

    @property
    def stderr_tail(self) -> Sequence[str]:
        return self._inner.stderr_tail

    async def aclose(self) -> None:
        if not self._eof_logged:  # closing starts with stdin EOF
            self._eof_logged = True
            self.writer.eof()
        await self._inner.aclose()
        self._log_exit()
        self.writer.close()

    def _log_exit(self) -> None:
        code = self._inner.returncode
        if code is not None and not self._exit_logged:
            self._exit_logged = True
            self.writer.exit(code)
