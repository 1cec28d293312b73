"""The trio side of the backend seam: system tasks, a one-shot wakeup, fd readiness."""

from __future__ import annotations

import contextvars
import math
from typing import Any

import anyio
import trio

NAME = "trio"


def spawn(fn: Any, args: tuple[Any, ...], name: str, context: contextvars.Context) -> object:
    """Start ``fn(*args)`` as a system task in ``context`` (trio holds it)."""
    return trio.lowlevel.spawn_system_task(fn, *args, name=name, context=context)


def current_task() -> object:
    """The calling task."""
    return trio.lowlevel.current_task()


def being_cancelled() -> bool:
    """Whether a cancel scope around the calling task has been cancelled."""
    return trio.current_effective_deadline() == -math.inf


class Wakeup:
    """Wakes one waiting task once."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = trio.Event()

    def set(self) -> None:
        self._event.set()

    async def wait(self) -> None:
        await self._event.wait()


class ReadableWatch:
    """Waits until a non-blocking fd can be read: ``anyio.wait_readable`` (trio's epoll
    registration is cheap). Call `close` before closing the fd."""

    __slots__ = ("_closed", "_fd", "_waited")

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._closed = False
        self._waited = False

    async def wait(self) -> None:
        """Return once the fd is readable; `anyio.ClosedResourceError` after `close`."""
        if self._closed:
            raise anyio.ClosedResourceError
        self._waited = True
        await anyio.wait_readable(self._fd)

    def close(self) -> None:
        """Stop watching; a task waiting now gets `anyio.ClosedResourceError`."""
        if self._closed:
            return
        self._closed = True
        if self._waited:
            anyio.notify_closing(self._fd)
