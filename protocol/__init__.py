"""The control protocol: the dispatcher SDK authors embed, and its sans-IO core.

``ControlSession`` runs a session over any `ctlwire.transport.Transport`: it serves the
CLI's requests with your handlers and hook callbacks, sends your own requests, and
hands every other frame to ``messages()``. ``ControlProtocol`` is the rules alone, with
no I/O, for whoever wants to drive them differently: lines in, events out, and the
events are all it tells its driver. Frame names, builders and the frame classifier
(`is_message`, `json_type`) for tools live in ``ctlwire.protocol.wire``.

May import: ``ctlwire.transport`` (its public face only), anyio, msgspec.
"""

from .context import RequestContext
from .core import (
    ControlProtocol,
    Event,
    Messages,
    RequestCancelled,
    RequestReceived,
    RequestRejected,
    ResponseReceived,
)
from .errors import (
    ControlError,
    FrameDecodeError,
    MalformedAnswer,
    MalformedFrame,
    ProtocolError,
    RequestTimeout,
    SessionClosed,
)
from .hooks import HookCallback, HookMatcher
from .requests import Answer, IncomingRequest, Outcome, OutgoingRequest, Stage
from .session import ControlSession, Handler

__all__ = [
    "Answer",
    "ControlError",
    "ControlProtocol",
    "ControlSession",
    "Event",
    "FrameDecodeError",
    "Handler",
    "HookCallback",
    "HookMatcher",
    "IncomingRequest",
    "MalformedAnswer",
    "MalformedFrame",
    "Messages",
    "Outcome",
    "OutgoingRequest",
    "ProtocolError",
    "RequestCancelled",
    "RequestContext",
    "RequestReceived",
    "RequestRejected",
    "RequestTimeout",
    "ResponseReceived",
    "SessionClosed",
    "Stage",
]
