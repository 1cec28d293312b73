"""Typed errors of the protocol layer."""

from __future__ import annotations


class ControlError(Exception):
    """The peer answered a control request with an error response."""

    def __init__(self, message: str, request_id: str = "", subtype: str = "") -> None:
        label = f"{subtype} request {request_id}" if subtype else f"request {request_id}"
        super().__init__(f"{label} failed: {message}" if request_id else message)
        self.message = message
        self.request_id = request_id
        self.subtype = subtype


class SessionClosed(Exception):
    """The session ended (CLI exit, EOF, transport error or close) before an answer came."""

    def __init__(self, reason: str, cause: BaseException | None = None) -> None:
        super().__init__(f"{reason}: {cause}" if cause is not None else reason)
        self.reason = reason
        self.cause = cause


class FrameDecodeError(ValueError):
    """A stdout line looked like JSON (started with ``{``) but did not parse."""

    def __init__(self, detail: str, line: bytes) -> None:
        self.preview = preview(line)
        super().__init__(f"{detail}; line ({len(line)} bytes): {self.preview}")


class MalformedFrame(ValueError):
    """A control frame lacks a field the protocol needs (``request_id``, ``subtype``...)."""

    def __init__(self, detail: str, frame: object, request_id: str | None = None) -> None:
        self.request_id = request_id
        super().__init__(f"{detail}: {preview(repr(frame).encode())}")


def preview(data: bytes, limit: int = 200) -> str:
    """A short, printable excerpt of a line for error messages."""
    text = data[:limit].decode("utf-8", errors="replace")
    return text + f"... (+{len(data) - limit} bytes)" if len(data) > limit else text
