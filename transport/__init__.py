"""Bytes, lines and processes: the pipe between an SDK and the agent CLI.

This package runs the CLI as a child process (`SubprocessTransport`: one class owning a
pure stream state, ``_stream``, and a pipes strategy, ``_pipes`` or ``_portable``,
picked with the child watcher of ``_child``) or fakes one in memory
(`memory_transport_pair`), frames its stdout into lines, reads its stderr, and holds
the backend seam that lets the layers above run background tasks on asyncio or trio
(`DetachedTask`, and `TaskPool` in ``_pool``). It may import nothing else of ctlwire;
the layers above (``ctlwire.protocol``, ``ctlwire.fixtures``) import only the names
exported here.
"""

from ._backend import DetachedTask, being_cancelled
from ._contain import Containment, ContainmentWarning
from ._contain import prepare as contain
from ._lifecycle import AsyncResource
from ._pool import TaskPool
from .base import StderrCallback, Transport
from .errors import (
    CtlwireError,
    InputBroken,
    InputClosed,
    LineTooLong,
    ProcessExited,
    TransportError,
)
from .framing import DEFAULT_MAX_LINE_BYTES, LineFramer
from .memory import MemoryPeer, MemoryTransport, memory_transport_pair
from .stderr import StderrLines
from .subprocess import SubprocessTransport

__all__ = [
    "DEFAULT_MAX_LINE_BYTES",
    "AsyncResource",
    "Containment",
    "ContainmentWarning",
    "CtlwireError",
    "DetachedTask",
    "InputBroken",
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
    "being_cancelled",
    "contain",
    "memory_transport_pair",
]
