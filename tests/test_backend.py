"""The backend-specific pieces: the handler task pool and the stdout readiness watch."""

from __future__ import annotations

import contextvars
import logging
import os
from collections.abc import Iterator

import anyio
import anyio.lowlevel
import pytest

from ctlwire.transport._backend import ReadableWatch
from ctlwire.transport._pool import TaskPool

pytestmark = pytest.mark.anyio

request_name: contextvars.ContextVar[str] = contextvars.ContextVar("request_name")


async def test_reused_tasks_give_each_job_its_own_context() -> None:
    pool = TaskPool("test")
    seen: list[tuple[str | None, int]] = []
    request_name.set("starter")

    async def job(name: str, done: anyio.Event) -> None:
        seen.append((request_name.get(None), anyio.get_current_task().id))
        request_name.set(name)  # must not leak into the starter or the next job
        await anyio.lowlevel.checkpoint()
        assert request_name.get() == name
        done.set()

    for name in ("first", "second", "third"):
        done = anyio.Event()
        pool.start(job, name, done)
        with anyio.fail_after(5):
            await done.wait()
            await pool.wait()
    assert [value for value, _ in seen] == ["starter"] * 3
    assert len({task for _, task in seen}) == 1  # one task served all three
    assert request_name.get() == "starter"
    pool.cancel_all()
    with anyio.fail_after(5):
        await pool.wait()


async def test_cancel_before_start_never_runs_the_job() -> None:
    pool = TaskPool("test")
    ran: list[str] = []
    kept = anyio.Event()

    async def job(name: str) -> None:
        ran.append(name)
        kept.set()

    cancel = pool.start(job, "cancelled")
    cancel()
    pool.start(job, "kept")
    with anyio.fail_after(5):
        await kept.wait()
        await pool.wait()
    assert ran == ["kept"]
    pool.cancel_all()
    with anyio.fail_after(5):
        await pool.wait()


async def test_cancel_while_running_runs_finally_and_the_pool_goes_on() -> None:
    pool = TaskPool("test")
    started, cleaned = anyio.Event(), anyio.Event()
    shielded_finished: list[bool] = []

    async def slow() -> None:
        try:
            started.set()
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):  # shields inside a job still hold
                await anyio.sleep(0.01)
                shielded_finished.append(True)
            cleaned.set()

    async def quick(done: anyio.Event) -> None:
        done.set()

    cancel = pool.start(slow)
    with anyio.fail_after(5):
        await started.wait()
        cancel()
        cancel()  # twice is harmless
        await cleaned.wait()
        done = anyio.Event()
        pool.start(quick, done)
        await done.wait()
    assert shielded_finished == [True]
    pool.cancel_all()
    with anyio.fail_after(5):
        await pool.wait()
    assert len(pool) == 0


async def test_a_job_that_raises_is_logged_and_the_pool_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pool = TaskPool("test")

    async def broken() -> None:
        raise ValueError("handler bug")

    async def fine(done: anyio.Event) -> None:
        done.set()

    with caplog.at_level(logging.ERROR):
        pool.start(broken)
        done = anyio.Event()
        pool.start(fine, done)
        with anyio.fail_after(5):
            await done.wait()
            await pool.wait()
    assert "handler bug" in caplog.text
    pool.cancel_all()
    with anyio.fail_after(5):
        await pool.wait()


async def test_cancel_all_ends_running_and_idle_tasks_and_caps_idle_ones() -> None:
    pool = TaskPool("test", max_idle=4)
    release = anyio.Event()
    finished: list[int] = []

    async def job(n: int) -> None:
        await release.wait()
        finished.append(n)

    for n in range(10):
        pool.start(job, n)
    release.set()
    with anyio.fail_after(5):
        await pool.wait()
    assert sorted(finished) == list(range(10))
    blocked = anyio.Event()

    async def stuck() -> None:
        blocked.set()
        await anyio.sleep_forever()

    pool.start(stuck)
    with anyio.fail_after(5):
        await blocked.wait()
        pool.cancel_all()
        await pool.wait()
    assert len(pool) == 0


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    r, w = os.pipe()
    os.set_blocking(r, False)
    yield r, w
    os.close(r)
    os.close(w)


async def test_watch_wakes_on_data_and_again_after_a_read(pipe: tuple[int, int]) -> None:
    r, w = pipe
    watch = ReadableWatch(r)
    for n in range(3):
        os.write(w, b"x%d" % n)
        with anyio.fail_after(5):
            await watch.wait()
        assert os.read(r, 10) == b"x%d" % n
    # Unread data while nobody waits must not spin or be lost.
    os.write(w, b"later")
    for _ in range(3):  # event loop passes with the fd readable and nobody waiting
        await anyio.lowlevel.checkpoint()
    with anyio.fail_after(5):
        await watch.wait()
    assert os.read(r, 10) == b"later"
    watch.close()


async def test_watch_close_wakes_the_waiter_and_refuses_a_second_one(
    pipe: tuple[int, int],
) -> None:
    r, _ = pipe
    watch = ReadableWatch(r)
    errors: list[BaseException] = []

    async def wait() -> None:
        try:
            await watch.wait()
        except (anyio.ClosedResourceError, anyio.BusyResourceError) as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(wait)
        await anyio.wait_all_tasks_blocked()
        watch.close()
    assert sorted(type(e).__name__ for e in errors) == ["BusyResourceError", "ClosedResourceError"]
    with pytest.raises(anyio.ClosedResourceError):
        await watch.wait()


async def test_cancelled_wait_leaves_the_watch_usable(pipe: tuple[int, int]) -> None:
    r, w = pipe
    watch = ReadableWatch(r)
    with anyio.move_on_after(0.01):
        await watch.wait()
    os.write(w, b"y")
    with anyio.fail_after(5):
        await watch.wait()
    watch.close()


async def test_the_backend_is_decided_by_the_running_loop(anyio_backend: str) -> None:
    from ctlwire.transport import _backend

    backend = _backend.current()
    assert anyio_backend == backend.NAME
    wakeup = backend.Wakeup()
    async with anyio.create_task_group() as tg:
        tg.start_soon(wakeup.wait)
        await anyio.wait_all_tasks_blocked()
        wakeup.set()
        wakeup.set()  # once only; a second set is harmless


async def test_detached_task_outlives_its_starter_and_is_cancelled_from_another() -> None:
    from ctlwire.transport import DetachedTask

    started = anyio.Event()

    async def forever() -> None:
        started.set()
        await anyio.sleep_forever()

    task = DetachedTask(forever, "test")

    async def starter() -> None:
        task.start()

    async with anyio.create_task_group() as tg:
        tg.start_soon(starter)
    with anyio.fail_after(5):
        await started.wait()
        task.cancel()
        await task.wait()
