"""The fault suite: a real peer misbehaves, ctlwire reports it clearly and loses nothing.

Each test names the fault; the expected outcome is a typed error naming the cause,
frames before the fault delivered in order, pending requests failed fast, and every
process reaped (the autouse fixture checks for leftover children after each test).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import anyio
import pytest
from helpers import open_fds, peer_argv

from ctlwire.protocol import ControlSession, HookMatcher, RequestContext, SessionClosed
from ctlwire.transport import LineTooLong, ProcessExited, SubprocessTransport, TransportError
from ctlwire.transport._stream import Life

pytestmark = pytest.mark.anyio


async def collect(session: ControlSession) -> tuple[list[dict[str, Any]], SessionClosed | None]:
    got: list[dict[str, Any]] = []
    with anyio.fail_after(10):
        try:
            async for message in session.messages():
                got.append(message)
        except SessionClosed as exc:
            return got, exc
    return got, None


async def test_crash_mid_line(caplog: pytest.LogCaptureFixture) -> None:
    async with (
        SubprocessTransport(peer_argv("crash_midline", "3")) as transport,
        ControlSession(transport) as session,
    ):
        got, error = await collect(session)
    assert got == [{"type": "assistant", "n": 1}]
    assert error is not None and isinstance(error.cause, ProcessExited)
    assert error.cause.returncode == 3
    assert "panic: lost the plot" in str(error)
    assert '"trunc' in caplog.text  # the half line is reported with a preview


async def test_noise_on_stdout_is_skipped_and_order_kept(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="ctlwire")
    async with (
        SubprocessTransport(peer_argv("noise")) as transport,
        ControlSession(transport) as session,
    ):
        got = []
        async for message in session.messages():
            got.append(message["n"])
            if message["type"] == "result":
                break
    assert got == [1, 2, 3]
    assert "[SandboxDebug] starting" in caplog.text
    assert "garbled" in caplog.text


async def test_line_over_the_limit() -> None:
    async with (
        SubprocessTransport(peer_argv("overlong", "5000"), max_line_bytes=1000) as transport,
        ControlSession(transport) as session,
    ):
        got, error = await collect(session)
    assert got == [{"type": "assistant", "n": 1}]
    assert error is not None and isinstance(error.cause, LineTooLong)
    assert (error.cause.limit, error.cause.size) == (1000, 5032)
    assert "limit is 1000 bytes" in str(error)


async def test_stdout_closed_while_the_cli_lives_on() -> None:
    async with (
        SubprocessTransport(peer_argv("close_stdout"), close_timeout=5) as transport,
        ControlSession(transport) as session,
    ):
        await session.initialize()
        started = time.monotonic()
        with pytest.raises(SessionClosed) as info:
            await session.request({"subtype": "interrupt"}, timeout=10)
        assert time.monotonic() - started < 2.0
        assert "still running" in str(info.value)
    assert transport.returncode is not None


async def test_cli_that_never_reads_stdin() -> None:
    async with (
        SubprocessTransport(peer_argv("no_read"), close_timeout=0.5) as transport,
        ControlSession(transport) as session,
    ):
        big = {"subtype": "interrupt", "pad": "x" * (4 << 20)}  # more than a pipe holds
        with pytest.raises(TimeoutError):
            await session.request(big, timeout=0.5)
        # The write was cut part-way through a line: say so instead of corrupting the stream.
        with pytest.raises(TransportError, match="part-way"):
            await session.send({"type": "user"})
        started = time.monotonic()
    assert time.monotonic() - started < 5  # close is bounded: EOF, grace, SIGTERM
    assert transport.returncode is not None


async def test_malformed_control_frames(caplog: pytest.LogCaptureFixture) -> None:
    async def ping(request: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        return {"pong": True}

    async with (
        SubprocessTransport(peer_argv("malformed")) as transport,
        ControlSession(transport, handlers={"ping": ping}) as session,
    ):
        kinds = []
        async for message in session.messages():
            kinds.append(message["type"])
            if message["type"] == "report":
                break
    answered = {a["request_id"]: a for a in message["answered"]}  # concurrent: any order
    assert set(answered) == {"no-subtype", "ok"}
    assert answered["no-subtype"]["subtype"] == "error"
    assert "without request.subtype" in answered["no-subtype"]["error"]
    assert answered["ok"] == {"subtype": "success", "request_id": "ok", "response": {"pong": True}}
    assert kinds == ["brand_new_kind", "report"]
    assert "control_request without a request_id" in caplog.text
    assert "invalid control_response" in caplog.text
    assert "invalid control_cancel_request" in caplog.text


async def test_duplicate_request_ids(caplog: pytest.LogCaptureFixture) -> None:
    gate = anyio.Event()

    async def on_hook(inp: dict[str, Any], tool_use_id: str | None, ctx: RequestContext) -> Any:
        await gate.wait()
        return {}

    hooks = {"PreToolUse": [HookMatcher(None, [on_hook])]}
    async with (
        SubprocessTransport(peer_argv("duplicate_ids")) as transport,
        ControlSession(transport, hooks=hooks) as session,
    ):
        gate.set()
        async for message in session.messages():
            if message["type"] == "report":
                break
    assert message["answers"] == 1
    assert "duplicate control_request id dup" in caplog.text


async def test_grandchild_holding_stdout() -> None:
    started = time.monotonic()
    async with (
        SubprocessTransport(peer_argv("grandchild")) as transport,
        ControlSession(transport) as session,
    ):
        got, error = await collect(session)
    assert got == [{"type": "assistant", "n": 1}] and error is None
    assert time.monotonic() - started < 5


# -- cancellation from outside --------------------------------------------------------------


async def test_cancel_scope_around_aclose_still_reaps_and_propagates() -> None:
    transport = SubprocessTransport(peer_argv("echo"))
    session = ControlSession(transport)
    await transport.start()
    await session.start()
    with anyio.CancelScope() as scope:
        scope.cancel()
        await session.aclose()
        pytest.fail("the cancellation did not propagate")  # pragma: no cover
    assert scope.cancelled_caught
    assert transport.returncode is not None


async def test_caller_cancelled_while_a_request_is_pending() -> None:
    async with (
        SubprocessTransport(peer_argv("no_read"), close_timeout=0.3) as transport,
        ControlSession(transport) as session,
    ):
        with anyio.move_on_after(0.2) as scope:
            await session.request({"subtype": "interrupt"})
        assert scope.cancelled_caught
        assert len(session._protocol.pending) == 0
    assert transport.returncode is not None


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_asyncio_timeout_and_raw_task_cancel(anyio_backend: str) -> None:
    import asyncio

    async with (
        SubprocessTransport(peer_argv("no_read"), close_timeout=0.3) as transport,
        ControlSession(transport) as session,
    ):
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await session.request({"subtype": "interrupt"})
        assert len(session._protocol.pending) == 0
    assert transport.returncode is not None

    # A raw task.cancel() while aclose() waits for a CLI that ignores stdin EOF.
    holder: list[SubprocessTransport] = []
    closing = asyncio.Event()

    async def user_code() -> None:
        async with SubprocessTransport(peer_argv("ignore_term"), close_timeout=5) as t:
            holder.append(t)
            async with ControlSession(t) as session:
                async for _ in session.messages():  # the peer is up
                    break
                closing.set()

    task = asyncio.get_running_loop().create_task(user_code())
    await closing.wait()
    with anyio.fail_after(5):  # until aclose() waits for the CLI to exit
        while holder[0]._state.life is Life.RUNNING:  # noqa: ASYNC110 - polling, with a deadline
            await asyncio.sleep(0.005)
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert holder[0].returncode is not None  # reaped anyway (the blocking fallback)
    assert time.monotonic() - started < 1  # without waiting out the 5 s grace


# -- load ----------------------------------------------------------------------------------


async def test_two_hundred_sessions_in_parallel(anyio_backend: str) -> None:
    async def on_hook(inp: dict[str, Any], tool_use_id: str | None, ctx: RequestContext) -> Any:
        if ctx.request_id.endswith(("0", "2")):
            await anyio.sleep_forever()
        return {}

    reports: list[dict[str, Any]] = []

    async def one() -> None:
        hooks = {"PreToolUse": [HookMatcher(None, [on_hook])]}
        async with (
            SubprocessTransport(peer_argv("hooks", "4", "2", "before")) as transport,
            ControlSession(transport, hooks=hooks) as session,
        ):
            await session.initialize()
            await session.request({"subtype": "ping"})
            async for message in session.messages():
                reports.append(message)
                break

    before_fds = len(open_fds())
    before_tasks = _task_count(anyio_backend)
    with anyio.fail_after(90):
        async with anyio.create_task_group() as tg:
            for _ in range(200):
                tg.start_soon(one)
    assert len(reports) == 200
    for report in reports:
        assert not set(report["cancelled"]) & set(report["counts"])
    await anyio.wait_all_tasks_blocked()
    assert len(open_fds()) == before_fds
    assert _task_count(anyio_backend) == before_tasks


def _task_count(backend: str) -> int:
    if backend == "asyncio":
        import asyncio

        return len(asyncio.all_tasks())
    import trio

    return int(trio.lowlevel.current_statistics().tasks_living)
