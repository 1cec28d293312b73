"""ControlSession over the in-memory pair: every dispatcher rule, on both backends."""

from __future__ import annotations

import math
import signal
import threading
from typing import Any

import anyio
import pytest
from helpers import run_python

from ctlwire.protocol import (
    ControlError,
    ControlSession,
    HookMatcher,
    RequestContext,
    RequestTimeout,
    SessionClosed,
)
from ctlwire.transport import CtlwireError, LineTooLong, ProcessExited, memory_transport_pair

pytestmark = pytest.mark.anyio


def hook(rid: str, callback_id: str = "hook_0") -> dict[str, Any]:
    return {
        "type": "control_request",
        "request_id": rid,
        "request": {
            "subtype": "hook_callback",
            "callback_id": callback_id,
            "input": {"tool_name": "Bash"},
            "tool_use_id": "toolu_1",
        },
    }


def cancel(rid: str) -> dict[str, Any]:
    return {"type": "control_cancel_request", "request_id": rid}


def answer(frame: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "control_response",
        "response": {"subtype": "success", "request_id": frame["request_id"], "response": payload},
    }


async def test_initialize_sends_hooks_and_returns_the_answer() -> None:
    async def on_hook(inp: dict[str, Any], tool_use_id: str | None, ctx: RequestContext) -> Any:
        return {}

    transport, peer = memory_transport_pair()
    hooks = {
        "PreToolUse": [
            HookMatcher("Bash", [on_hook, on_hook], timeout=2),
            HookMatcher(None, [on_hook]),
        ],
        "PostToolUse": [HookMatcher(callbacks=[on_hook])],
    }
    async with ControlSession(transport, hooks=hooks) as session, anyio.create_task_group() as tg:
        result: list[Any] = []

        async def init() -> None:
            result.append(await session.initialize())

        tg.start_soon(init)
        frame = await peer.receive_frame()
        assert frame["request"] == {
            "subtype": "initialize",
            "hooks": {
                "PreToolUse": [
                    {"matcher": "Bash", "hookCallbackIds": ["hook_0", "hook_1"], "timeout": 2},
                    {"matcher": None, "hookCallbackIds": ["hook_2"]},
                ],
                "PostToolUse": [{"matcher": None, "hookCallbackIds": ["hook_3"]}],
            },
        }
        assert frame["request_id"].startswith("req_1_")
        await peer.send_frame(answer(frame, {"commands": []}))
    assert result == [{"commands": []}]


async def test_cli_requests_are_served_while_initialize_is_pending() -> None:
    async def on_mcp(request: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        return {"mcp_response": {"jsonrpc": "2.0", "id": request["message"]["id"], "result": {}}}

    transport, peer = memory_transport_pair()
    async with (
        ControlSession(transport, handlers={"mcp_message": on_mcp}) as session,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(session.initialize)
        init = await peer.receive_frame()
        await peer.send_frame(
            {
                "type": "control_request",
                "request_id": "m1",
                "request": {"subtype": "mcp_message", "server_name": "s", "message": {"id": 7}},
            }
        )
        reply = await peer.receive_frame()
        assert reply["response"]["response"]["mcp_response"]["id"] == 7
        await peer.send_frame(answer(init, {}))


async def test_error_answer_is_control_error_and_timeout_forgets_the_entry() -> None:
    transport, peer = memory_transport_pair()
    async with ControlSession(transport) as session, anyio.create_task_group() as tg:

        async def respond() -> None:
            frame = await peer.receive_frame()
            await peer.send_frame(
                {
                    "type": "control_response",
                    "response": {
                        "subtype": "error",
                        "request_id": frame["request_id"],
                        "error": "model not found",
                    },
                }
            )

        tg.start_soon(respond)
        with pytest.raises(ControlError) as info:
            await session.request({"subtype": "set_model", "model": "nope"})
        assert info.value.message == "model not found"
        assert info.value.subtype == "set_model"

        with pytest.raises(TimeoutError) as timed_out:
            await session.request({"subtype": "interrupt"}, timeout=0.05)
        assert isinstance(timed_out.value, RequestTimeout) and isinstance(
            timed_out.value, CtlwireError
        )
        assert len(session._protocol.pending) == 0
        late = await peer.receive_frame()
        assert timed_out.value.request_id == late["request_id"]
        assert (
            str(timed_out.value)
            == f"no answer to interrupt request {late['request_id']} within 0.05 s"
        )
        await peer.send_frame(answer(late, {"late": True}))  # dropped with a debug log

        with anyio.CancelScope() as scope:
            scope.cancel()
            await session.request({"subtype": "interrupt"})
        assert len(session._protocol.pending) == 0


async def test_handlers_answer_raise_and_unknown_subtypes_get_errors() -> None:
    async def boom(request: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        raise ValueError("handler broke")

    async def allow(request: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        return {"behavior": "allow", "updatedInput": request["input"]}

    transport, peer = memory_transport_pair()
    handlers = {"can_use_tool": allow, "elicitation": boom}
    async with ControlSession(transport, handlers=handlers):
        for rid, request in [
            ("a", {"subtype": "can_use_tool", "tool_name": "Write", "input": {"x": 1}}),
            ("b", {"subtype": "elicitation"}),
            ("c", {"subtype": "request_user_dialog"}),
            ("d", {"subtype": "hook_callback", "callback_id": "hook_9"}),
        ]:
            await peer.send_frame(
                {"type": "control_request", "request_id": rid, "request": request}
            )
            reply = (await peer.receive_frame())["response"]
            assert reply["request_id"] == rid
            if rid == "a":
                assert reply == {
                    "subtype": "success",
                    "request_id": "a",
                    "response": {"behavior": "allow", "updatedInput": {"x": 1}},
                }
            else:
                assert reply["subtype"] == "error"


STOPPING_HANDLER = """
import sys, anyio
from ctlwire import ControlSession
from ctlwire.transport import memory_transport_pair

async def handler(request, ctx):
    stop = KeyboardInterrupt() if sys.argv[2] == "ctrl-c" else SystemExit(3)
    if sys.argv[3] == "grouped":
        raise BaseExceptionGroup("the handler's task group", [stop])
    raise stop

async def main():
    transport, peer = memory_transport_pair()
    with anyio.fail_after(20):
        async with ControlSession(transport, handlers={"can_use_tool": handler}):
            ask = {"subtype": "can_use_tool"}
            await peer.send_frame({"type": "control_request", "request_id": "r", "request": ask})
            print("the CLI got", await peer.receive_frame(), flush=True)

anyio.run(main, backend=sys.argv[1])
"""


@pytest.mark.parametrize("how", ["bare", "grouped"])
@pytest.mark.parametrize("stop", ["ctrl-c", "exit"])
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_handler_that_stops_the_program_is_not_answered(
    backend: str, stop: str, how: str
) -> None:
    """A KeyboardInterrupt or SystemExit from a handler, bare or in the exception group of
    the handler's own task group, stops the program, and the CLI gets no error answer."""
    done = run_python(STOPPING_HANDLER, backend, stop, how)
    assert "the CLI got" not in done.stdout, done.stdout
    assert "TimeoutError" not in done.stderr, done.stderr
    if backend == "asyncio":  # the program ends as it would with the bare exception
        assert done.returncode == (-signal.SIGINT if stop == "ctrl-c" else 3), done.stderr
    else:  # trio ends a run whose system task raised: the cause is still in the trace
        assert done.returncode != 0
        assert ("KeyboardInterrupt" if stop == "ctrl-c" else "SystemExit: 3") in done.stderr


@pytest.mark.parametrize(
    ("request_body", "text"),
    [
        ({"subtype": "elicitation"}, "handler broke"),
        ({"subtype": "request_user_dialog"}, "request_user_dialog"),
        ({"subtype": "hook_callback", "callback_id": "hook_9"}, "hook_9"),
    ],
)
async def test_error_texts_name_the_cause(request_body: dict[str, Any], text: str) -> None:
    async def boom(request: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        raise ValueError("handler broke")

    transport, peer = memory_transport_pair()
    async with ControlSession(transport, handlers={"elicitation": boom}):
        await peer.send_frame(
            {"type": "control_request", "request_id": "x", "request": request_body}
        )
        reply = (await peer.receive_frame())["response"]
        assert reply["subtype"] == "error" and text in reply["error"]


async def test_cancel_runs_finally_fires_the_signal_and_writes_nothing() -> None:
    started = anyio.Event()
    log: list[str] = []
    seen: list[RequestContext] = []

    async def slow(inp: dict[str, Any], tool_use_id: str | None, ctx: RequestContext) -> Any:
        seen.append(ctx)
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            log.append("finally")

    transport, peer = memory_transport_pair()
    async with ControlSession(transport, hooks={"PreToolUse": [HookMatcher(None, [slow])]}):
        await peer.send_frame(hook("h1"))
        await started.wait()
        await peer.send_frame(cancel("h1"))
        await peer.send_frame(cancel("never-existed"))  # a no-op
        await peer.send_frame(cancel("h1"))  # twice: still a no-op
        await seen[0].wait_cancelled()
        await peer.send_frame(
            {"type": "control_request", "request_id": "p", "request": {"subtype": "x"}}
        )
        reply = await peer.receive_frame()
        assert reply["response"]["request_id"] == "p"  # nothing was written for h1
        assert log == ["finally"]
        assert seen[0].cancelled


async def test_cancel_in_the_same_read_prevents_the_start() -> None:
    calls: list[str] = []

    async def on_hook(inp: dict[str, Any], tool_use_id: str | None, ctx: RequestContext) -> Any:
        calls.append(ctx.request_id)
        return {}

    transport, peer = memory_transport_pair()
    async with ControlSession(transport, hooks={"PreToolUse": [HookMatcher(None, [on_hook])]}):
        await peer.write(
            b'{"type":"control_request","request_id":"early","request":'
            b'{"subtype":"hook_callback","callback_id":"hook_0","input":{}}}\n'
            b'{"type":"control_cancel_request","request_id":"early"}\n'
        )
        await peer.send_frame(hook("later"))
        reply = await peer.receive_frame()
        assert reply["response"]["request_id"] == "later"
    assert calls == ["later"]


async def test_worker_thread_sees_the_cancel() -> None:
    entered = threading.Event()
    saw_cancel: list[bool] = []

    def blocking_work(ctx: RequestContext) -> None:
        entered.set()
        saw_cancel.append(ctx.wait_cancelled_blocking(timeout=10))

    async def handler(request: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        await anyio.to_thread.run_sync(blocking_work, ctx)
        return {"done": True}

    transport, peer = memory_transport_pair()
    async with ControlSession(transport, handlers={"can_use_tool": handler}):
        await peer.send_frame(
            {"type": "control_request", "request_id": "t", "request": {"subtype": "can_use_tool"}}
        )
        await anyio.to_thread.run_sync(entered.wait, 10)
        await peer.send_frame(cancel("t"))
        await peer.send_frame(
            {"type": "control_request", "request_id": "u", "request": {"subtype": "x"}}
        )
        assert (await peer.receive_frame())["response"]["request_id"] == "u"
    assert saw_cancel == [True]


async def test_messages_in_order_with_unknown_types_and_clean_end() -> None:
    transport, peer = memory_transport_pair()
    async with ControlSession(transport) as session:
        await peer.write(b'{"n":0,"type":"system"}\n{"type":"keep_alive"}\n[SandboxDebug] x\n')
        await peer.write(b'{"type":"brand_new","n":1}\n{"type":"assist')
        await peer.write(b'ant","n":2}\n{"type": garbage}\n{"type":"result","n":3}\n')
        await peer.exit(0)
        got = [m["n"] async for m in session.messages()]
    assert got == [0, 1, 2, 3]
    assert session.failure is None


async def test_cli_death_fails_pending_requests_with_exit_code_and_stderr() -> None:
    transport, peer = memory_transport_pair()
    async with ControlSession(transport) as session, anyio.create_task_group() as tg:

        async def die() -> None:
            await peer.receive_frame()
            await peer.send_frame({"type": "assistant", "n": 1})
            await peer.send_stderr("fatal: out of tokens")
            await peer.exit(2)

        tg.start_soon(die)
        with anyio.fail_after(1), pytest.raises(SessionClosed) as info:
            await session.request({"subtype": "interrupt"}, timeout=None)
        assert isinstance(info.value.cause, ProcessExited)
        assert info.value.cause.returncode == 2
        assert "exited with code 2" in str(info.value) and "out of tokens" in str(info.value)
        # Messages before the death are delivered, then the same error is raised.
        got = []
        with pytest.raises(SessionClosed, match="code 2"):
            async for message in session.messages():
                got.append(message)
        assert got == [{"type": "assistant", "n": 1}]
        with pytest.raises(SessionClosed):
            await session.request({"subtype": "interrupt"})


async def test_line_too_long_ends_the_session_naming_limit_and_size() -> None:
    transport, peer = memory_transport_pair(max_line_bytes=100)
    async with ControlSession(transport) as session:
        await peer.write(b'{"type":"a"}\n' + b"x" * 150)
        with pytest.raises(SessionClosed) as info:
            async for _ in session.messages():
                pass
        assert isinstance(info.value.cause, LineTooLong)
        assert info.value.cause.limit == 100 and info.value.cause.size == 150


async def test_slow_consumer_does_not_block_control_traffic() -> None:
    async def on_hook(inp: dict[str, Any], tool_use_id: str | None, ctx: RequestContext) -> Any:
        return {"ok": True}

    transport, peer = memory_transport_pair()
    hooks = {"PreToolUse": [HookMatcher(None, [on_hook])]}
    async with ControlSession(transport, hooks=hooks, buffer_bytes=4096) as session:
        for i in range(150):  # over the memory budget; nobody reads messages
            await peer.send_frame({"type": "assistant", "n": i})

        async def interrupt() -> dict[str, Any]:
            return await session.request({"subtype": "interrupt"})

        async with anyio.create_task_group() as tg:
            tg.start_soon(interrupt)
            frame = await peer.receive_frame()
            await peer.send_frame(answer(frame, {}))
        # What did not fit the budget was kept on disk: nothing is lost or reordered.
        assert session._buffer.spilled_bytes > 0
        got = []
        async for message in session.messages():
            got.append(message["n"])
            if len(got) == 150:
                break
        assert got == list(range(150))


async def test_close_cancels_handlers_without_answers_and_fails_pending() -> None:
    started = anyio.Event()
    finals: list[str] = []

    async def slow(request: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            finals.append(ctx.request_id)
        return {}

    transport, peer = memory_transport_pair()
    session = ControlSession(transport, handlers={"can_use_tool": slow})
    await session.start()
    errors: list[BaseException] = []

    async def pending() -> None:
        try:
            await session.request({"subtype": "interrupt"})
        except SessionClosed as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(pending)
        await peer.receive_frame()
        await peer.send_frame(
            {"type": "control_request", "request_id": "z", "request": {"subtype": "can_use_tool"}}
        )
        await started.wait()
        await session.aclose()
    await session.aclose()  # idempotent
    assert finals == ["z"]
    assert len(errors) == 1 and "closed" in str(errors[0])
    with pytest.raises(anyio.EndOfStream):
        await peer.receive_line()  # nothing was answered


async def test_model_of_random_schedules_keeps_the_invariants() -> None:
    """A seeded random schedule: requests, cancels before/during/after, raises, our own
    requests with answers, timeouts and late answers, then close."""

    for seed in range(5):
        await run_schedule(seed)


async def run_schedule(seed: int) -> None:
    """One seeded random schedule against the in-memory pair; asserts the invariants."""
    import random

    rng = random.Random(seed)
    gates: dict[str, anyio.Event] = {}

    async def handler(request: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        gate = gates.setdefault(ctx.request_id, anyio.Event())
        await gate.wait()
        if request.get("raise"):
            raise RuntimeError("raised on purpose")
        return {"id": ctx.request_id}

    transport, peer = memory_transport_pair()
    cancelled: set[str] = set()
    sent: list[str] = []
    async with ControlSession(transport, handlers={"work": handler}) as session:
        outcomes: dict[int, str] = {}

        async def ours(i: int) -> None:
            try:
                await session.request({"subtype": "mine", "i": i}, timeout=rng.choice([0.05, 5]))
                outcomes[i] = "answered"
            except TimeoutError:
                outcomes[i] = "timeout"
            except SessionClosed:
                outcomes[i] = "closed"

        async with anyio.create_task_group() as tg:
            for step in range(60):
                action = rng.random()
                rid = f"s{seed}-{step}"
                if action < 0.4:
                    await peer.send_frame(
                        {
                            "type": "control_request",
                            "request_id": rid,
                            "request": {"subtype": "work", "raise": rng.random() < 0.2},
                        }
                    )
                    sent.append(rid)
                    if rng.random() < 0.2:
                        await peer.send_frame(cancel(rid))  # before it can start
                        cancelled.add(rid)
                elif action < 0.6 and sent:
                    victim = rng.choice(sent)
                    if victim in cancelled:
                        pass
                    elif victim in gates and gates[victim].is_set():
                        # Cancel after completion: a no-op; the answer stands.
                        await anyio.wait_all_tasks_blocked()
                        await peer.send_frame(cancel(victim))
                    else:  # cancel while it runs (or waits to start)
                        await peer.send_frame(cancel(victim))
                        cancelled.add(victim)
                elif action < 0.8 and sent:
                    victim = rng.choice(sent)
                    if victim not in cancelled:
                        gates.setdefault(victim, anyio.Event()).set()
                else:
                    tg.start_soon(ours, step)
            await anyio.wait_all_tasks_blocked()
            for rid in sent:
                gates.setdefault(rid, anyio.Event()).set()
            # Answer our own requests, including ones that already timed out.
            answers: dict[str, int] = {}
            while True:
                with anyio.move_on_after(0.3):
                    frame = await peer.receive_frame()
                    if frame["type"] == "control_request":
                        await peer.send_frame(answer(frame, {}))
                    else:
                        rid = frame["response"]["request_id"]
                        answers[rid] = answers.get(rid, 0) + 1
                    continue
                break
        assert all(n == 1 for n in answers.values()), answers
        assert not (set(answers) & cancelled), set(answers) & cancelled
        assert set(answers) | cancelled == set(sent)
        assert all(v in ("answered", "timeout") for v in outcomes.values()), outcomes
    assert len(session._protocol.pending) == 0 and len(session._protocol.in_flight) == 0


async def test_fast_path_keeps_order_loses_nothing_and_bounds_memory() -> None:
    transport, peer = memory_transport_pair()
    async with ControlSession(transport, buffer_bytes=64 * 1024) as session:
        chunk = b"".join(b'{"type":"assistant","n":%d}\n' % i for i in range(3000))
        await peer.write(chunk)  # one read, no control frame: queued as raw lines
        await peer.write(b'{"type":"keep_alive"}\n[SandboxDebug] x\n{"type":"result","n":3000}\n')
        with anyio.fail_after(5):
            while len(session._buffer) < 3003:  # noqa: ASYNC110 - polling, with a deadline
                await anyio.sleep(0.001)
        # The reader never paused; what passed the budget (after one read) went to disk.
        assert session._buffer.memory_bytes <= 64 * 1024 + len(chunk) + 64 * 3000
        assert session._buffer.spilled_bytes > 0
        first = []
        async for message in session.messages():
            first.append(message["n"])
            if len(first) == 100:  # break in the middle of a decoded run
                break
        rest = []
        async for message in session.messages():
            rest.append(message["n"])
            if message["type"] == "result":
                break
    assert first + rest == list(range(3001))


@pytest.mark.parametrize("close_timeout", [math.nan, -1.0])
async def test_a_close_timeout_that_is_not_a_duration_is_refused(close_timeout: float) -> None:
    transport, _ = memory_transport_pair()
    with pytest.raises(ValueError, match=r"close_timeout must be a number of seconds >= 0"):
        ControlSession(transport, close_timeout=close_timeout)
    await transport.aclose()


async def test_a_transport_that_is_not_one_is_refused_naming_what_it_lacks() -> None:
    class Half:
        async def send(self, data: bytes) -> None: ...

    with pytest.raises(TypeError, match=r"Half lacks aclose, end_input, exit_error"):
        ControlSession(Half())  # type: ignore[arg-type]
    transport, _ = memory_transport_pair()
    with pytest.raises(ValueError, match="budget must be positive"):
        ControlSession(transport, buffer_bytes=0)
    with pytest.raises(TypeError, match="handler for 'can_use_tool' is not callable"):
        ControlSession(transport, handlers={"can_use_tool": "allow"})  # type: ignore[dict-item]
