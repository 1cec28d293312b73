"""A task owned by no caller's task group, so that any task may stop it.

This is the only backend-specific code in ctlwire. An object that needs background work
(reading stderr, dispatching frames) runs it here instead of in a task group entered by
the caller, because the caller's ``__aexit__`` may run in another task (an async
generator's finalizer), and anyio's cancel scopes must be exited in the task that
entered them.
"""

from __future__ import annotations

import contextvars
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

logger = logging.getLogger(__name__)

# asyncio keeps only weak references to tasks; hold ours until they finish.
_running: set[object] = set()


class DetachedTask:
    """Runs ``fn()`` in a task of its own; `cancel` and `wait` work from any task."""

    def __init__(self, fn: Callable[[], Awaitable[None]], name: str) -> None:
        self._fn = fn
        self._name = name
        self._scope = anyio.CancelScope()
        self._done = anyio.Event()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def start(self) -> None:
        context = contextvars.copy_context()
        trio = sys.modules.get("trio")
        if trio is not None and _in_trio(trio):
            trio.lowlevel.spawn_system_task(self._run, name=self._name, context=context)
        else:
            import asyncio

            task = asyncio.get_running_loop().create_task(
                self._run(), name=self._name, context=context
            )
            _running.add(task)
            task.add_done_callback(_running.discard)

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


def _in_trio(trio: Any) -> bool:
    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        return False
    return True
