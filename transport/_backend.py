"""The only backend-specific code in ctlwire: detached tasks and fd readiness.

An object that needs background work (reading stderr, dispatching frames, serving
requests) runs it in tasks owned by no caller's task group, because the caller's
``__aexit__`` may run in another task (an async generator's finalizer), and anyio's
cancel scopes must be exited in the task that entered them.
"""

from __future__ import annotations

import contextvars
import logging
import sys
import types
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import anyio

logger = logging.getLogger(__name__)

# asyncio keeps only weak references to tasks; hold ours until they finish.
_running: set[object] = set()

Cancel = Callable[[], object]
Job = Callable[..., Coroutine[Any, Any, object]]


def _trio_or_none() -> Any:
    """The trio module if the calling task runs on trio, else None (asyncio)."""
    trio = sys.modules.get("trio")
    if trio is None:
        return None
    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        return None
    return trio


_UNKNOWN: Any = object()


def _spawn(fn: Job, args: tuple[Any, ...], name: str, trio: Any = _UNKNOWN) -> object:
    """Start ``fn(*args)`` in a new task of the running backend, outside any task group,
    in a copy of the current context, and return the task. ``fn`` must let nothing but
    cancellation escape. On asyncio the caller must hold the task until it ends.
    ``trio`` is `_trio_or_none()`, if the caller knows it already."""
    context = contextvars.copy_context()
    if trio is _UNKNOWN:
        trio = _trio_or_none()
    if trio is not None:
        return trio.lowlevel.spawn_system_task(fn, *args, name=name, context=context)
    import asyncio

    return asyncio.get_running_loop().create_task(fn(*args), name=name, context=context)


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
        task: Any = _spawn(self._run, (), self._name)
        if hasattr(task, "add_done_callback"):  # asyncio: hold it until it ends
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


@types.coroutine
def _in_context(context: contextvars.Context, coro: Coroutine[Any, Any, Any]) -> Any:
    """Await ``coro`` with every step run in ``context``, as if it were a task of its own:
    what it sets in context variables stays with it."""
    send, throw = coro.send, coro.throw
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = context.run(send, value) if error is None else context.run(throw, error)
        except StopIteration as stop:
            return stop.value
        try:
            value, error = (yield step), None
        except BaseException as exc:  # cancellation, GeneratorExit: the job decides
            value, error = None, exc


class _Job:
    __slots__ = ("args", "cancelled", "context", "fn", "worker")

    def __init__(self, fn: Job, args: tuple[Any, ...]) -> None:
        self.fn = fn
        self.args = args
        self.context = contextvars.copy_context()
        self.cancelled = False
        self.worker: _Worker | None = None

    def cancel(self) -> None:
        self.cancelled = True
        worker = self.worker
        if worker is not None and worker.job is self:
            worker.scope.cancel()


class _Wakeup:
    """Wakes one waiting task once: an asyncio future or a trio event (an anyio.Event
    costs twice as much, and the pool makes one per job)."""

    __slots__ = ("_waiter",)

    def __init__(self, trio: Any) -> None:
        if trio is not None:
            self._waiter = trio.Event()
        else:
            import asyncio

            self._waiter = asyncio.get_running_loop().create_future()

    def set(self) -> None:
        waiter = self._waiter
        if hasattr(waiter, "set_result"):
            if not waiter.done():
                waiter.set_result(None)
        else:
            waiter.set()

    async def wait(self) -> None:
        waiter = self._waiter
        if hasattr(waiter, "set_result"):
            await waiter
        else:
            await waiter.wait()


class _Worker:
    __slots__ = ("assigned", "job", "scope")

    def __init__(self, job: _Job) -> None:
        self.job: _Job | None = job
        self.scope = anyio.CancelScope()
        self.assigned: _Wakeup | None = None


class TaskPool:
    """Runs many short jobs concurrently, each cancellable on its own; `cancel_all` and
    `wait` cover them together. One per session serves the CLI's requests.

    Tasks are reused: an idle one takes the next job, and a new task starts only when
    none is idle. Each job runs in a copy of the starter's context, as a task of a task
    group would, and a cancelled job takes its task (and that task's anyio cancel scope,
    so shields and worker threads inside jobs behave as anyio promises) with it. Starting
    a task and entering a scope per job would cost more than the rest of a request round
    trip.
    """

    def __init__(self, name: str, max_idle: int = 16) -> None:
        self._name = name
        self._max_idle = max_idle
        # Each worker with its task: asyncio holds tasks only weakly.
        self._workers: dict[_Worker, object] = {}
        self._idle: list[_Worker] = []
        self._all_done: anyio.Event | None = None
        self._closing = False
        self._trio: Any = _UNKNOWN  # learnt at the first start: a pool serves one event loop

    def __len__(self) -> int:
        """Jobs running or about to run."""
        return len(self._workers) - len(self._idle)

    def start(self, fn: Job, *args: Any) -> Cancel:
        """Run ``fn(*args)`` soon; return what cancels it (before or after it starts)."""
        job = _Job(fn, args)
        if self._idle:
            worker = self._idle.pop()
            worker.job = job
            assert worker.assigned is not None
            worker.assigned.set()
        else:
            if self._trio is _UNKNOWN:
                self._trio = _trio_or_none()
            worker = _Worker(job)
            self._workers[worker] = _spawn(self._work, (worker,), self._name, self._trio)
        job.worker = worker
        return job.cancel

    def cancel_all(self) -> None:
        """Cancel every job, and let idle tasks end."""
        self._closing = True
        for worker in list(self._workers):
            if worker.job is not None:
                worker.job.cancel()
            elif worker.assigned is not None:
                worker.assigned.set()

    async def wait(self) -> None:
        """Return once every task of the pool has ended (after `cancel_all`), or, before
        it, once no job is running."""
        while len(self._workers) > (0 if self._closing else len(self._idle)):
            if self._all_done is None:
                self._all_done = anyio.Event()
            await self._all_done.wait()

    async def _work(self, worker: _Worker) -> None:
        try:
            with worker.scope:
                while (job := worker.job) is not None:
                    if not job.cancelled:
                        await self._run(job)
                    worker.job = None
                    if job.cancelled or self._closing or len(self._idle) >= self._max_idle:
                        return
                    worker.assigned = _Wakeup(self._trio)
                    self._idle.append(worker)
                    self._notify()
                    await worker.assigned.wait()
        finally:
            if worker in self._idle:
                self._idle.remove(worker)
            del self._workers[worker]
            self._notify()

    async def _run(self, job: _Job) -> None:
        try:
            await _in_context(job.context, job.fn(*job.args))
        except Exception:
            # No task group collects these; a bug here must not pass in silence.
            logger.exception("%s task failed", self._name)

    def _notify(self) -> None:
        if self._all_done is not None:
            self._all_done.set()
            self._all_done = None


class ReadableWatch:
    """Waits until a non-blocking fd can be read, from one task at a time.

    On asyncio the fd stays registered with the selector between waits, and is dropped
    only when it turns readable while nobody waits (it is level-triggered);
    ``anyio.wait_readable`` adds and removes it on every call, two system calls and a
    selector update per message in a request/response exchange. On trio it is
    ``anyio.wait_readable``. Call `close` before closing the fd.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._trio: Any = _UNKNOWN
        self._loop: Any = None  # the asyncio loop the fd is registered with, if any
        self._waiter: Any = None
        self._closed = False

    async def wait(self) -> None:
        """Return once the fd is readable; `anyio.ClosedResourceError` after `close`."""
        if self._closed:
            raise anyio.ClosedResourceError
        if self._trio is _UNKNOWN:
            self._trio = _trio_or_none()
        if self._trio is not None:
            await anyio.wait_readable(self._fd)
            return
        if self._waiter is not None:
            raise anyio.BusyResourceError("reading from")
        import asyncio

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
        if self._trio is not _UNKNOWN and self._trio is not None:
            anyio.notify_closing(self._fd)
            return
        self._unregister()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(anyio.ClosedResourceError())
