"""Bytes, lines and processes: the pipe between an SDK and the agent CLI."""

from .base import StderrCallback, Transport
from .errors import LineTooLong, ProcessExited, TransportError
from .framing import DEFAULT_MAX_LINE_BYTES, LineFramer
from .memory import MemoryPeer, MemoryTransport, memory_transport_pair
from .subprocess import SubprocessTransport

__all__ = [
    "DEFAULT_MAX_LINE_BYTES",
    "LineFramer",
    "LineTooLong",
    "MemoryPeer",
    "MemoryTransport",
    "ProcessExited",
    "StderrCallback",
    "SubprocessTransport",
    "Transport",
    "TransportError",
    "memory_transport_pair",
]
