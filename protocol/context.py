"""What a handler knows about the request it serves, including whether it was cancelled."""

from __future__ import annotations

import threading
from collections.abc import Callable

import anyio


class RequestContext:
    """The CLI request a handler serves.

    ``cancelled`` turns true when the CLI cancels the request (or the session closes);
    it is safe to read from a worker thread, which anyio cannot cancel.
    """

    __slots__ = ("_event", "_flag", "_stop_task", "_thread_event", "request_id", "subtype")

    def __init__(self, request_id: str, subtype: str) -> None:
        self.request_id = request_id
        self.subtype = subtype
        self._flag = False  # a plain bool: reading it from another thread is safe
        self._stop_task: Callable[[], object] | None = None  # cancels the handler's task
        self._event: anyio.Event | None = None
        self._thread_event: threading.Event | None = None  # made on first blocking wait

    def __repr__(self) -> str:
        return f"RequestContext({self.request_id!r}, {self.subtype!r}, cancelled={self.cancelled})"

    @property
    def cancelled(self) -> bool:
        return self._flag

    async def wait_cancelled(self) -> None:
        """Return once the request is cancelled."""
        if self._flag:
            return
        if self._event is None:
            self._event = anyio.Event()
        await self._event.wait()

    def wait_cancelled_blocking(self, timeout: float | None = None) -> bool:
        """From a worker thread: block until cancelled or ``timeout``; True if cancelled."""
        if self._thread_event is None:
            self._thread_event = threading.Event()
        # `stop` sets the flag before it looks for the event, so checking the flag after
        # publishing the event cannot miss a cancel that raced with it.
        if self._flag:
            return True
        return self._thread_event.wait(timeout)


# The session's two handles on a context; handlers never need them.


def attach_task(context: RequestContext, stop_task: Callable[[], object] | None) -> None:
    """What stopping ``context`` cancels: its handler's task; None once the handler is
    done (its answer is then stopped by the transport's guard, never mid-line)."""
    context._stop_task = stop_task


def stop(context: RequestContext) -> None:
    """The CLI cancelled the request, or the session is ending: mark ``context``
    cancelled, cancel its handler's task, wake whoever waits for the cancel."""
    context._flag = True
    if context._stop_task is not None:
        context._stop_task()
    if context._thread_event is not None:
        context._thread_event.set()
    if context._event is not None:
        context._event.set()
