"""Typed errors of the protocol layer; every one derives from `ctlwire.CtlwireError`."""

from __future__ import annotations

from ctlwire.transport import CtlwireError


class ControlError(CtlwireError):
    """The CLI answered one of our control requests with an error response."""

    def __init__(self, message: str, request_id: str = "", subtype: str = "") -> None:
        label = f"{subtype} request {request_id}" if subtype else f"request {request_id}"
        super().__init__(f"{label} failed: {message}" if request_id else message)
        self.message = message
        self.request_id = request_id
        self.subtype = subtype


class MalformedAnswer(ControlError):
    """The CLI answered one of our requests with a response that breaks the protocol."""


class RequestTimeout(CtlwireError, TimeoutError):
    """No answer to one of our control requests came within its timeout."""

    def __init__(self, request_id: str, subtype: str, timeout: float) -> None:
        super().__init__(f"no answer to {subtype} request {request_id} within {timeout:g} s")
        self.request_id = request_id
        self.subtype = subtype
        self.timeout = timeout


class SessionClosed(CtlwireError):
    """The session ended (CLI exit, EOF, transport error or close) before an answer came."""

    def __init__(self, reason: str, cause: BaseException | None = None) -> None:
        super().__init__(f"{reason}: {cause}" if cause is not None else reason)
        self.reason = reason
        self.cause = cause


class ProtocolError(CtlwireError, ValueError):
    """The CLI wrote something the protocol does not allow (reported, then skipped)."""


class FrameDecodeError(ProtocolError):
    """A stdout line looked like JSON (started with ``{``) but was not a JSON object."""

    def __init__(self, detail: str, line: bytes) -> None:
        self.preview = preview(line)
        super().__init__(f"{detail}; line ({len(line)} bytes): {self.preview}")


class MalformedFrame(ProtocolError):
    """A control frame lacks a field the protocol needs, or has one of the wrong type."""

    def __init__(self, detail: str, frame: object, request_id: str | None = None) -> None:
        self.detail = detail
        self.request_id = request_id
        super().__init__(f"{detail}: {preview(repr(frame).encode())}")


def preview(data: bytes, limit: int = 200) -> str:
    """A short, printable excerpt of a line for error messages."""
    text = data[:limit].decode("utf-8", errors="replace")
    return text + f"... (+{len(data) - limit} bytes)" if len(data) > limit else text
