"""The backend seam: detached tasks and fd readiness, on asyncio or trio.

An object that needs background work (reading stderr, dispatching frames, serving
requests) runs it in tasks owned by no caller's task group, because the caller's
``__aexit__`` may run in another task (an async generator's finalizer), and anyio's
cancel scopes must be exited in the task that entered them.

Which backend runs is decided once per object, by `current`; everything specific to one
backend lives in ``_asyncio_backend`` or ``_trio_backend``, behind three names: ``spawn``
(a detached task in a given context), ``Wakeup`` (a one-shot wakeup) and
``ReadableWatch`` (fd readiness). anyio>=4.7 no longer depends on sniffio, so the
decision is made here: a running asyncio loop means asyncio, anything else is trio.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import anyio

logger = logging.getLogger(__name__)


class OneShot(Protocol):
    """A one-shot wakeup: `set` once, `wait` by one task."""

    def set(self) -> None: ...
    async def wait(self) -> None: ...


class Watch(Protocol):
    async def wait(self) -> None: ...
    def close(self) -> None: ...


class Backend(Protocol):
    """What each backend module offers."""

    NAME: str

    def spawn(
        self, fn: Any, args: tuple[Any, ...], name: str, context: contextvars.Context
    ) -> object: ...

    def being_cancelled(self) -> bool: ...

    def current_task(self) -> object: ...

    @property
    def Wakeup(self) -> Callable[[], OneShot]: ...

    @property
    def ReadableWatch(self) -> Callable[[int], Watch]: ...


def current() -> Backend:
    """The backend of the calling task: asyncio if an asyncio loop runs, else trio."""
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        from . import _trio_backend as trio_backend

        return trio_backend
    from . import _asyncio_backend as asyncio_backend

    return asyncio_backend


def being_cancelled() -> bool:
    """Whether the calling task is really being cancelled, as opposed to merely seeing a
    cancellation exception that some awaited thing raised on its own."""
    return current().being_cancelled()


def ReadableWatch(fd: int) -> Watch:
    """Waits until a non-blocking fd can be read, from one task at a time; `close` it
    before closing the fd. On asyncio the fd stays registered between waits (see
    ``_asyncio_backend.ReadableWatch``); on trio it is ``anyio.wait_readable``."""
    return current().ReadableWatch(fd)


class DetachedTask:
    """Runs ``fn()`` in a task of its own; `cancel` and `wait` work from any task."""

    def __init__(self, fn: Callable[[], Awaitable[None]], name: str) -> None:
        self._fn = fn
        self._name = name
        self._scope = anyio.CancelScope()
        self._done = anyio.Event()

    def start(self) -> None:
        current().spawn(self._run, (), self._name, contextvars.copy_context())

    def cancel(self) -> None:
        self._scope.cancel()

    async def wait(self) -> None:
        await self._done.wait()

    async def _run(self) -> None:
        try:
            with self._scope:
                await self._fn()
        except BaseException as exc:
            # Nothing may escape: on trio a system task that raises crashes the run, and on
            # asyncio it would be "Task exception was never retrieved". Outside
            # cancellation (loop shutdown) is fine to swallow here; the task ends either way.
            if not isinstance(exc, anyio.get_cancelled_exc_class()):
                logger.exception("background task %s failed", self._name)
        finally:
            self._done.set()
