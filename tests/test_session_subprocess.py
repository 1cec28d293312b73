"""ControlSession against a real subprocess peer, on asyncio and trio."""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from helpers import peer_argv

from ctlwire.protocol import ControlSession, HookMatcher, RequestContext, SessionClosed
from ctlwire.transport import ProcessExited, SubprocessTransport

pytestmark = pytest.mark.anyio

USER = {
    "type": "user",
    "message": {"role": "user", "content": "hi"},
    "parent_tool_use_id": None,
    "session_id": "default",
}


async def query(prompt: str, opened: list[SubprocessTransport]) -> AsyncIterator[dict[str, Any]]:
    """An SDK-style query(): the pattern whose early exit broke the reference SDK."""
    async with SubprocessTransport(peer_argv("echo")) as transport:
        opened.append(transport)
        async with ControlSession(transport) as session:
            await session.initialize()
            await session.send({**USER, "message": {"role": "user", "content": prompt}})
            async for message in session.messages():
                yield message


async def wait_until(predicate: Any, within: float = 10.0) -> None:
    with anyio.fail_after(within):
        while not predicate():  # noqa: ASYNC110 - polling a process state, with a deadline
            await anyio.sleep(0.01)


def install_loop_error_trap(anyio_backend: str) -> list[dict[str, Any]]:
    errors: list[dict[str, Any]] = []
    if anyio_backend == "asyncio":
        import asyncio

        asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: errors.append(ctx))
    return errors


def assert_clean_logs(caplog: pytest.LogCaptureFixture) -> None:
    text = caplog.text.lower()
    assert "cancel scope" not in text
    assert "never retrieved" not in text
    assert "background task" not in text


async def break_after_first(opened: list[SubprocessTransport]) -> dict[str, Any]:
    async for message in query("hello", opened):
        return message
    raise AssertionError("no message")


async def test_breaking_out_of_a_query_generator_is_clean(
    anyio_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    errors = install_loop_error_trap(anyio_backend)
    opened: list[SubprocessTransport] = []
    first = await break_after_first(opened)
    assert first["type"] == "assistant"
    gc.collect()  # the abandoned generator is finalized by the loop, in another task
    await wait_until(lambda: opened[0].returncode is not None)
    assert errors == []
    assert_clean_logs(caplog)


async def test_twenty_abandoned_generators_in_parallel(
    anyio_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    errors = install_loop_error_trap(anyio_backend)
    opened: list[SubprocessTransport] = []
    async with anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(break_after_first, opened)
    gc.collect()
    await wait_until(lambda: len(opened) == 20 and all(t.returncode is not None for t in opened))
    assert errors == []
    assert_clean_logs(caplog)


async def test_aclose_explicitly_from_another_task(
    anyio_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    errors = install_loop_error_trap(anyio_backend)
    opened: list[SubprocessTransport] = []
    gen = query("hello", opened)
    assert (await gen.__anext__())["type"] == "assistant"
    async with anyio.create_task_group() as tg:
        tg.start_soon(gen.aclose)  # a different task than the one that entered
    assert opened[0].returncode == 0
    assert errors == []
    assert_clean_logs(caplog)


@pytest.mark.parametrize("when", ["after", "before"])
async def test_thousand_hooks_half_cancelled(when: str) -> None:
    finals: list[str] = []
    started: list[str] = []

    async def on_hook(inp: dict[str, Any], tool_use_id: str | None, ctx: RequestContext) -> Any:
        number = int(ctx.request_id.split("-")[1])
        started.append(ctx.request_id)
        try:
            if number % 2 == 0:
                await anyio.sleep_forever()  # the peer cancels the even ones
            return {"n": number}
        finally:
            finals.append(ctx.request_id)

    hooks = {"PreToolUse": [HookMatcher(None, [on_hook])]}
    async with (
        SubprocessTransport(peer_argv("hooks", "1000", "2", when)) as transport,
        ControlSession(transport, hooks=hooks) as session,
    ):
        async for message in session.messages():
            assert message["type"] == "report"
            break
    cancelled = set(message["cancelled"])
    counts = message["counts"]
    assert len(cancelled) == 500
    assert not cancelled & set(counts), "a cancelled id was answered"
    assert set(counts) == {f"cli-{i}" for i in range(1000)} - cancelled
    assert set(counts.values()) == {1}
    assert sorted(finals) == sorted(started)  # every handler that started ran its finally
    if when == "before":
        assert not cancelled & set(started), "a handler cancelled before it started ran"
    else:  # cancelled while running: every handler started, and each ran its finally
        assert len(started) == 1000


@pytest.mark.parametrize("subtype", ["hook_callback", "can_use_tool", "mcp_message"])
async def test_cancel_of_each_kind_of_handler(subtype: str) -> None:
    events: list[str] = []
    contexts: list[RequestContext] = []

    async def slow(request: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        contexts.append(ctx)
        await session.send(USER)  # tell the peer we started
        try:
            await anyio.sleep_forever()
        finally:
            events.append("finally")
        return {}

    async def slow_hook(inp: dict[str, Any], tool_use_id: str | None, ctx: RequestContext) -> Any:
        return await slow(inp, ctx)

    async def ping(request: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        return {"pong": True}

    handlers = {"ping": ping, subtype: slow} if subtype != "hook_callback" else {"ping": ping}
    hooks = {"PreToolUse": [HookMatcher(None, [slow_hook])]}
    async with (
        SubprocessTransport(peer_argv("cancel_one", subtype)) as transport,
        ControlSession(transport, handlers=handlers, hooks=hooks) as session,
    ):
        async for message in session.messages():
            if message["type"] == "report":
                break
    assert message["answered"] == ["after"]  # nothing for the cancelled "victim"
    assert events == ["finally"]
    assert contexts[0].cancelled


async def test_pending_request_fails_fast_when_the_cli_dies() -> None:
    async with (
        SubprocessTransport(peer_argv("die_on_request", "3")) as transport,
        ControlSession(transport) as session,
    ):
        await session.initialize()
        started = time.monotonic()
        with pytest.raises(SessionClosed) as info:
            await session.request({"subtype": "interrupt"}, timeout=30)
        assert time.monotonic() - started < 1.0
        assert isinstance(info.value.cause, ProcessExited)
        assert info.value.cause.returncode == 3
        assert "the model exploded" in str(info.value)


async def test_hook_answered_while_nobody_reads_messages() -> None:
    async def on_hook(inp: dict[str, Any], tool_use_id: str | None, ctx: RequestContext) -> Any:
        return {"continue": True}

    hooks = {"PreToolUse": [HookMatcher(None, [on_hook])]}
    async with (
        SubprocessTransport(peer_argv("flood_then_hook", "500")) as transport,
        ControlSession(transport, hooks=hooks) as session,
    ):
        # Not reading: the hook must still be answered. The peer reports once it was.
        with anyio.fail_after(10):
            while len(session._buffer) < 501:  # noqa: ASYNC110 - 500 messages, then the report
                await anyio.sleep(0.01)
        messages = []
        async for message in session.messages():
            messages.append(message)
            if message["type"] == "report":
                break
    assert [m["n"] for m in messages[:-1]] == list(range(500))
    assert messages[-1]["answer"]["response"]["response"] == {"continue": True}


async def test_control_frames_in_a_flood_are_answered_in_order() -> None:
    async def on_hook(inp: dict[str, Any], tool_use_id: str | None, ctx: RequestContext) -> Any:
        return {}

    hooks = {"PreToolUse": [HookMatcher(None, [on_hook])]}
    async with (
        SubprocessTransport(peer_argv("interleave", "20000")) as transport,
        ControlSession(transport, hooks=hooks) as session,
    ):
        seen = []
        async for message in session.messages():
            if message["type"] == "report":
                break
            seen.append(message["n"])
    assert seen == list(range(20000))
    assert message["order"] == [f"h{i}" for i in range(200)]
    print(f"slowest hook round trip inside the flood: {message['slowest'] * 1000:.1f} ms")
