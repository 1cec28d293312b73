"""`TaskPool`: many short jobs on reused tasks, each cancellable on its own.

What it buys: the session serves each CLI request (a hook, a permission question) on a
task the pool keeps, instead of starting a task in a task group with a cancel scope per
request. ``python -m bench`` measures both side by side in one run (the ``hooks:
TaskPool / task per request`` rows, against ``bench/plain_runner.py``): with every
process on one CPU the pool made hook round trips 1.35x to 1.59x faster on asyncio and
1.45x to 2.35x on trio over the runs in bench/README.md, since starting a task costs
more than the rest of a round trip. It stays while that figure holds at 1.10 or more."""

from __future__ import annotations

import contextvars
import logging
import types
from collections.abc import Callable, Coroutine
from typing import Any

import anyio

from ._backend import Backend, OneShot, current

logger = logging.getLogger(__name__)

Cancel = Callable[[], object]
Job = Callable[..., Coroutine[Any, Any, object]]


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


class _Worker:
    __slots__ = ("assigned", "job", "scope", "task")

    def __init__(self, job: _Job) -> None:
        self.job: _Job | None = job
        self.scope = anyio.CancelScope()
        self.assigned: OneShot | None = None
        self.task: object = None


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
        self._workers: set[_Worker] = set()
        self._idle: list[_Worker] = []
        self._all_done: anyio.Event | None = None
        self._closing = False
        self._backend: Backend | None = None  # learnt at the first start: one event loop

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
            backend = self._backend
            if backend is None:
                backend = self._backend = current()
            worker = _Worker(job)
            self._workers.add(worker)
            worker.task = backend.spawn(
                self._work, (worker,), self._name, contextvars.copy_context()
            )
        job.worker = worker
        return job.cancel

    def in_a_job(self) -> bool:
        """Whether the caller is a job of this pool (one that calls back into its owner)."""
        if self._backend is None:
            return False
        task = self._backend.current_task()
        return any(w.task is task and w.job is not None for w in self._workers)

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
        assert self._backend is not None
        wakeup = self._backend.Wakeup
        try:
            with worker.scope:
                while (job := worker.job) is not None:
                    if not job.cancelled:
                        await self._run(job)
                    worker.job = None
                    if job.cancelled or self._closing or len(self._idle) >= self._max_idle:
                        return
                    worker.assigned = wakeup()
                    self._idle.append(worker)
                    self._notify()
                    await worker.assigned.wait()
        finally:
            if worker in self._idle:
                self._idle.remove(worker)
            self._workers.discard(worker)
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
