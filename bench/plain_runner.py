"""The plain alternative to ctlwire's TaskPool, for the bench: a new task per request,
started in a task group that one background task owns, each in its own cancel scope."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import anyio
import anyio.abc

from ctlwire.transport import DetachedTask


class TaskGroupRunner:
    """The `TaskPool` interface (start, cancel_all, wait) on a plain anyio task group."""

    def __init__(self) -> None:
        self._group: anyio.abc.TaskGroup | None = None
        self._ready = anyio.Event()
        self._running = 0
        self._idle = anyio.Event()
        self._owner = DetachedTask(self._own, name="bench task group")
        self._owner.start()

    async def _own(self) -> None:
        async with anyio.create_task_group() as group:
            self._group = group
            self._ready.set()
            await anyio.sleep_forever()

    def start(
        self, fn: Callable[..., Coroutine[Any, Any, object]], *args: Any
    ) -> Callable[[], object]:
        scope = anyio.CancelScope()

        async def run() -> None:
            self._running += 1
            try:
                with scope:
                    await fn(*args)
            finally:
                self._running -= 1
                if not self._running:
                    self._idle.set()

        assert self._group is not None, "await ready() first"
        self._group.start_soon(run)
        return scope.cancel

    async def ready(self) -> None:
        await self._ready.wait()

    def in_a_job(self) -> bool:
        """The bench never closes a session from inside a handler."""
        return False

    def cancel_all(self) -> None:
        if self._group is not None:
            self._group.cancel_scope.cancel()
        self._owner.cancel()

    async def wait(self) -> None:
        await self._owner.wait()
