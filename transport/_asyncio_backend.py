"""The asyncio side of the backend seam: detached tasks, a one-shot wakeup, fd readiness."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Coroutine
from typing import Any

import anyio

NAME = "asyncio"

# asyncio keeps only weak references to tasks; hold ours until they finish.
_running: set[asyncio.Task[Any]] = set()


def spawn(
    fn: Any, args: tuple[Any, ...], name: str, context: contextvars.Context
) -> asyncio.Task[Any]:
    """Start ``fn(*args)`` as a task of its own in ``context``, held until it ends."""
    coro: Coroutine[Any, Any, Any] = fn(*args)
    task = asyncio.get_running_loop().create_task(coro, name=name, context=context)
    _running.add(task)
    task.add_done_callback(_running.discard)
    return task


def current_task() -> object:
    """The calling task."""
    return asyncio.current_task()


def being_cancelled() -> bool:
    """Whether the calling task has a cancel request pending (anyio's scopes use them)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class Wakeup:
    """Wakes one waiting task once (a bare future: an anyio.Event costs twice as much)."""

    __slots__ = ("_future",)

    def __init__(self) -> None:
        self._future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def set(self) -> None:
        if not self._future.done():
            self._future.set_result(None)

    async def wait(self) -> None:
        await self._future


class ReadableWatch:
    """Waits until a non-blocking fd can be read, from one task at a time.

    The fd stays registered with the selector between waits, and is dropped only when it
    turns readable while nobody waits (it is level-triggered); ``anyio.wait_readable``
    adds and removes it on every call, two system calls and a selector update per
    message in a request/response exchange. Call `close` before closing the fd.
    """

    __slots__ = ("_closed", "_fd", "_loop", "_waiter")

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._loop: asyncio.AbstractEventLoop | None = None  # where the fd is registered
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False

    async def wait(self) -> None:
        """Return once the fd is readable; `anyio.ClosedResourceError` after `close`."""
        if self._closed:
            raise anyio.ClosedResourceError
        if self._waiter is not None:
            raise anyio.BusyResourceError("reading from")
        loop = asyncio.get_running_loop()
        if self._loop is None:
            loop.add_reader(self._fd, self._on_readable)
            self._loop = loop
        self._waiter = waiter = loop.create_future()
        try:
            await waiter
        finally:
            self._waiter = None

    def _on_readable(self) -> None:
        waiter = self._waiter
        if waiter is None:
            self._unregister()
        elif not waiter.done():
            waiter.set_result(None)

    def _unregister(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self._fd)
            self._loop = None

    def close(self) -> None:
        """Stop watching; a task waiting now gets `anyio.ClosedResourceError`."""
        if self._closed:
            return
        self._closed = True
        self._unregister()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(anyio.ClosedResourceError())
