"""Bytes, lines and processes: the pipe between an SDK and the agent CLI."""

from ._backend import DetachedTask, TaskPool
from ._lifecycle import AsyncResource
from .base import StderrCallback, Transport
from .errors import CtlwireError, InputClosed, LineTooLong, ProcessExited, TransportError
from .framing import DEFAULT_MAX_LINE_BYTES, LineFramer
from .memory import MemoryPeer, MemoryTransport, memory_transport_pair
from .stderr import StderrLines
from .subprocess import SubprocessTransport

__all__ = [
    "DEFAULT_MAX_LINE_BYTES",
    "AsyncResource",
    "CtlwireError",
    "DetachedTask",
    "InputClosed",
    "LineFramer",
    "LineTooLong",
    "MemoryPeer",
    "MemoryTransport",
    "ProcessExited",
    "StderrCallback",
    "StderrLines",
    "SubprocessTransport",
    "TaskPool",
    "Transport",
    "TransportError",
    "memory_transport_pair",
]
