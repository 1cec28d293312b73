"""Session logs: a JSON-lines record of everything that crossed the wire, and redaction."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Literal

import msgspec

from .wire import parse_object

logger = logging.getLogger(__name__)

LOG_VERSION = 1
Source = Literal["sdk", "cli"]


class LogHeader(msgspec.Struct):
    """The optional first line: ``{"ctlwire_log": 1, "argv": [...], "cli_version": "..."}``."""

    ctlwire_log: int = LOG_VERSION
    argv: list[str] = msgspec.field(default_factory=list)
    cli_version: str | None = None


class Record(msgspec.Struct, omit_defaults=True):
    """One event: ``t`` seconds after the start, by ``src``, with exactly one payload."""

    t: float
    src: Source
    frame: dict[str, Any] | None = None
    line: str | None = None
    stderr: str | None = None
    eof: bool | None = None
    exit: int | None = None

    @property
    def kind(self) -> str:
        """Which payload this record carries: frame, line, stderr, eof or exit."""
        for name in PAYLOADS:
            if getattr(self, name) is not None:
                return name
        return "none"


PAYLOADS = ("frame", "line", "stderr", "eof", "exit")


class LogFormatError(ValueError):
    """A session log is not valid; names the file, the line and what is wrong."""

    def __init__(self, path: str | os.PathLike[str], lineno: int, what: str) -> None:
        super().__init__(f"{os.fspath(path)}:{lineno}: {what}")
        self.path = os.fspath(path)
        self.lineno = lineno


class SessionLog(msgspec.Struct):
    """A whole log; ``lines[i]`` is the 1-based line number of ``records[i]``."""

    header: LogHeader
    records: list[Record]
    lines: list[int]
    path: str = "<memory>"

    def line_of(self, index: int) -> int:
        return self.lines[index] if 0 <= index < len(self.lines) else 0


_record_decoder = msgspec.json.Decoder(Record)
_encoder = msgspec.json.Encoder()


def parse_record(raw: bytes, path: str | os.PathLike[str] = "<memory>", lineno: int = 0) -> Record:
    try:
        record = _record_decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise LogFormatError(path, lineno, f"invalid record: {exc}") from None
    except msgspec.DecodeError as exc:
        raise LogFormatError(path, lineno, f"not JSON: {exc}") from None
    payloads = [name for name in PAYLOADS if getattr(record, name) is not None]
    if len(payloads) != 1:
        found = ", ".join(payloads) or "none"
        raise LogFormatError(
            path, lineno, f"a record needs exactly one of {', '.join(PAYLOADS)} (found: {found})"
        )
    if record.eof is False:
        raise LogFormatError(path, lineno, '"eof" must be true')
    return record


def parse_log(data: bytes, path: str | os.PathLike[str] = "<memory>") -> SessionLog:
    header = LogHeader()
    records: list[Record] = []
    lines: list[int] = []
    for lineno, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        if not records and b'"ctlwire_log"' in raw:
            try:
                header = msgspec.json.decode(raw, type=LogHeader)
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                raise LogFormatError(path, lineno, f"invalid header: {exc}") from None
            if header.ctlwire_log != LOG_VERSION:
                raise LogFormatError(path, lineno, f"unsupported log version {header.ctlwire_log}")
            continue
        if b'"ctlwire_log"' in raw:
            raise LogFormatError(path, lineno, "a log header may only be the first line")
        records.append(parse_record(raw, path, lineno))
        lines.append(lineno)
    return SessionLog(header, records, lines, os.fspath(path))


def read_log(path: str | os.PathLike[str]) -> SessionLog:
    """Read and validate a session log; `LogFormatError` names file, line and problem."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise LogFormatError(path, 0, f"cannot read: {exc.strerror}") from None
    return parse_log(data, path)


def encode_records(header: LogHeader | None, records: Iterable[Record]) -> bytes:
    lines = [_encoder.encode(header)] if header is not None else []
    lines += [_encoder.encode(record) for record in records]
    return b"\n".join(lines) + b"\n"


# -- redaction ----------------------------------------------------------------------------

REDACTED = "[REDACTED]"
_SECRET_KEY = re.compile(
    r"(api[_-]?key|auth[_-]?token|access[_-]?token|refresh[_-]?token|secret|password|"
    r"authorization|cookie|credential|x-api-key|bearer)",
    re.IGNORECASE,
)
_SECRET_TEXT = re.compile(
    r"(sk-ant-[A-Za-z0-9_\-]{4,}|sk-[A-Za-z0-9]{20,}|(?i:bearer)\s+[A-Za-z0-9._~+/\-]{8,}=*|"
    r"(?i:(?:api[_-]?key|token|secret|password|authorization)[\"']?\s*[:=]\s*[\"']?)"
    r"(?:(?i:bearer)\s+)?[^\s\"',}]{4,})"
)


def redact_text(text: str) -> str:
    """Mask API keys, bearer tokens and ``key=value`` secrets inside free text."""
    return _SECRET_TEXT.sub(_mask_match, text)


def _mask_match(match: re.Match[str]) -> str:
    found = match.group(0)
    for sep in ("=", ":"):
        if sep in found and not found.lower().startswith(("sk-", "bearer")):
            head = found[: found.index(sep) + 1]
            rest = found[len(head) :]
            quote = rest[: len(rest) - len(rest.lstrip("\"' "))]
            return head + quote + REDACTED
    if found.lower().startswith("bearer"):
        return found.split()[0] + " " + REDACTED
    return REDACTED


def redact(value: Any) -> Any:
    """A copy of a JSON value with secret-looking keys and strings masked."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {
            key: (REDACTED if _is_secret_key(key, item) else redact(item))
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [redact(item) for item in value]
    return value


def _is_secret_key(key: object, value: object) -> bool:
    return isinstance(key, str) and isinstance(value, str) and bool(_SECRET_KEY.search(key))


# -- writing ------------------------------------------------------------------------------


class LogWriter:
    """Appends records to a log file created with mode 0600, one flushed line each.

    Thread-safe. A write that fails is reported once (a warning) and the session goes on:
    losing the log must never break the session it records.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        argv: Sequence[str] = (),
        cli_version: str | None = None,
        redact_secrets: bool = True,
    ) -> None:
        self.path = os.fspath(path)
        self.redact_secrets = redact_secrets
        self._lock = threading.Lock()
        self._start = time.monotonic()
        self._file: IO[bytes] | None = None
        self._failed = False
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.fchmod(fd, 0o600)  # also when the file existed with wider permissions
            self._file = os.fdopen(fd, "wb")
        except OSError as exc:
            self._fail(exc)
        argv_out = [redact_text(a) for a in argv] if redact_secrets else list(argv)
        self._write_line(_encoder.encode(LogHeader(argv=argv_out, cli_version=cli_version)))

    @property
    def failed(self) -> bool:
        return self._failed

    def elapsed(self) -> float:
        return round(time.monotonic() - self._start, 4)

    def frame(self, src: Source, frame: dict[str, Any]) -> None:
        self.record(Record(self.elapsed(), src, frame=self._clean(frame)))

    def line(self, src: Source, text: str) -> None:
        self.record(Record(self.elapsed(), src, line=self._clean(text)))

    def stderr(self, text: str) -> None:
        self.record(Record(self.elapsed(), "cli", stderr=self._clean(text)))

    def eof(self) -> None:
        self.record(Record(self.elapsed(), "sdk", eof=True))

    def exit(self, code: int) -> None:
        self.record(Record(self.elapsed(), "cli", exit=code))

    def stdout_line(self, src: Source, raw: bytes) -> None:
        """Record one line as written: a frame if it parses as a JSON object, else text."""
        frame = parse_object(raw) if raw[:1] == b"{" else None
        if frame is not None:
            self.frame(src, frame)
        else:
            self.line(src, raw.decode("utf-8", errors="replace"))

    def record(self, record: Record) -> None:
        self._write_line(_encoder.encode(record))

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                try:
                    self._file.close()
                except OSError as exc:
                    self._fail(exc)
                self._file = None

    def _clean(self, value: Any) -> Any:
        return redact(value) if self.redact_secrets else value

    def _write_line(self, data: bytes) -> None:
        with self._lock:
            if self._file is None:
                return
            try:
                self._file.write(data + b"\n")
                self._file.flush()
            except OSError as exc:
                self._fail(exc)

    def _fail(self, exc: OSError) -> None:
        if not self._failed:
            self._failed = True
            logger.warning("cannot write session log %s: %s; recording stopped", self.path, exc)
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None
