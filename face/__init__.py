"""ctlwire: drive an agent CLI over its JSON-lines control protocol.

The names an SDK author needs, in one place; the layers behind them are
`ctlwire.transport` (bytes, lines, processes), `ctlwire.protocol` (frames and the
dispatcher) and `ctlwire.fixtures` (the ``ctlwire`` command, fake CLI, session logs).
"""

from ctlwire.protocol import (
    ControlError,
    ControlSession,
    Handler,
    HookCallback,
    HookMatcher,
    MalformedAnswer,
    ProtocolError,
    RequestContext,
    RequestTimeout,
    SessionClosed,
)
from ctlwire.transport import (
    ContainmentWarning,
    CtlwireError,
    InputClosed,
    LineTooLong,
    ProcessExited,
    SubprocessTransport,
    Transport,
    TransportError,
)

# The one place the version is written: pyproject.toml reads it from here (a static
# attr, no import), so `import ctlwire` needs no package metadata lookup.
__version__ = "0.1.0"

__all__ = [
    "ContainmentWarning",
    "ControlError",
    "ControlSession",
    "CtlwireError",
    "Handler",
    "HookCallback",
    "HookMatcher",
    "InputClosed",
    "LineTooLong",
    "MalformedAnswer",
    "ProcessExited",
    "ProtocolError",
    "RequestContext",
    "RequestTimeout",
    "SessionClosed",
    "SubprocessTransport",
    "Transport",
    "TransportError",
    "__version__",
]
