"""Frames and the dispatcher."""

from .context import RequestContext
from .errors import ControlError, FrameDecodeError, MalformedFrame, SessionClosed
from .hooks import HookCallback, HookMatcher
from .session import ControlSession, Handler
from .wire import (
    CONTROL_TYPES,
    ControlCancel,
    ControlRequest,
    ControlResponse,
    Frame,
    decode_line,
    encode_frame,
)

__all__ = [
    "CONTROL_TYPES",
    "ControlCancel",
    "ControlError",
    "ControlRequest",
    "ControlResponse",
    "ControlSession",
    "Frame",
    "FrameDecodeError",
    "Handler",
    "HookCallback",
    "HookMatcher",
    "MalformedFrame",
    "RequestContext",
    "SessionClosed",
    "decode_line",
    "encode_frame",
]
