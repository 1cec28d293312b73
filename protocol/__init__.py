"""Frames, the dispatcher, session logs and replay."""

from .context import RequestContext
from .errors import ControlError, FrameDecodeError, MalformedFrame, SessionClosed
from .hooks import HookCallback, HookMatcher
from .log import LogFormatError, LogHeader, LogWriter, Record, SessionLog, read_log
from .recording import RecordingTransport
from .replay import ReplayResult, replay_log
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
    "LogFormatError",
    "LogHeader",
    "LogWriter",
    "MalformedFrame",
    "Record",
    "RecordingTransport",
    "ReplayResult",
    "RequestContext",
    "SessionClosed",
    "SessionLog",
    "decode_line",
    "encode_frame",
    "read_log",
    "replay_log",
]
