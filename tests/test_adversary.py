"""Adversarial cases against the dispatcher's rules, beyond what test_hostile.py covers.

Every test asserts the behaviour the rules promise, so each one FAILS while the bug it
targets exists. Each names the rule it checks; the report on branch ``adversary`` gives
the observed behaviour and the diagnosis. Every case runs on asyncio and trio.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import types
from pathlib import Path
from typing import Any

import anyio
import pytest
from helpers import TESTS, hostile_argv, ping, script_line

from ctlwire.protocol import ControlSession, RequestContext, SessionClosed
from ctlwire.transport import SubprocessTransport, memory_transport_pair

pytestmark = pytest.mark.anyio

SPILL_CHILD = TESTS / "adversary_spill.py"


def req(rid: str, subtype: str = "ping", **fields: Any) -> dict[str, Any]:
    return {"type": "control_request", "request_id": rid, "request": {"subtype": subtype, **fields}}


def cancel(rid: str) -> dict[str, Any]:
    return {"type": "control_cancel_request", "request_id": rid}


async def answers_until(peer: Any, rid: str) -> list[dict[str, Any]]:
    """Every frame the SDK wrote, up to and including the answer to ``rid``."""
    got: list[dict[str, Any]] = []
    with anyio.fail_after(10):
        while True:
            frame = await peer.receive_frame()
            got.append(frame)
            if frame.get("type") == "control_response" and frame["response"]["request_id"] == rid:
                return got


async def ask_big(
    session: ControlSession, outcome: list[BaseException | dict[str, Any]], settled: anyio.Event
) -> None:
    """Send a 4 MiB request with no timeout; note its answer or error, then set ``settled``."""
    try:
        outcome.append(await session.request({"subtype": "big", "pad": "x" * (4 << 20)}, None))
    except Exception as exc:
        outcome.append(exc)
    finally:
        settled.set()


async def poll(predicate: Any, what: str, deadline: float = 10.0) -> None:
    """Wait (with a deadline) for a condition no event signals."""
    with anyio.fail_after(deadline):
        while not predicate():  # noqa: ASYNC110 - polling internal state, with a deadline
            await anyio.sleep(0.001)


# -- rule 7: a `{` line that does not parse is skipped, never glued to its neighbour ----------


@pytest.mark.parametrize(
    ("first", "second", "fabricated"),
    [
        # each line alone is garbage; joined with "," they form two objects
        (b'{"type":"assistant","a":[1', b'2]},{"type":"user"}', {"type": "assistant", "a": [1, 2]}),
        # a string cut at a newline comes back with a comma the CLI never wrote
        (b'{"type":"assistant","t":"x', b'y"},{"type":"user"}', {"type": "assistant", "t": "x,y"}),
    ],
)
async def test_unparseable_lines_are_skipped_not_joined_into_messages(
    first: bytes, second: bytes, fabricated: dict[str, Any]
) -> None:
    transport, peer = memory_transport_pair()
    async with ControlSession(transport) as session:
        await peer.write(first + b"\n" + second + b"\n" + b'{"type":"result","n":1}\n')
        await peer.exit(0)
        got = []
        with anyio.fail_after(5):
            async for message in session.messages():
                got.append(message)
    assert fabricated not in got
    assert got == [{"type": "result", "n": 1}]


# -- rules 2, 9, 1: an answer decided for a cancelled request answers nothing else -----------


async def test_a_cancelled_handlers_answer_never_answers_a_new_request_with_its_id() -> None:
    """The CLI cancels X while its handler sits in a worker thread (which anyio cannot
    cancel), then sends a new request under the same id. The old handler's value must be
    dropped; the new request must get the new handler's answer, exactly once."""
    started, release = threading.Event(), threading.Event()
    first_done, second_go = anyio.Event(), anyio.Event()

    async def first(request: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        def work() -> dict[str, Any]:
            started.set()
            release.wait(10)
            return {"from": "first (cancelled)"}

        try:
            return await anyio.to_thread.run_sync(work)
        finally:
            first_done.set()

    async def second(request: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        await second_go.wait()
        return {"from": "second"}

    transport, peer = memory_transport_pair()
    handlers = {"first": first, "second": second, "ping": ping}
    async with ControlSession(transport, handlers=handlers) as session:
        await peer.send_frame(req("X", "first"))
        with anyio.fail_after(5):
            await anyio.to_thread.run_sync(started.wait, 5)
        await peer.send_frame(cancel("X"))
        await peer.send_frame(req("X", "second"))
        await poll(
            lambda: getattr(session._protocol.in_flight.get("X"), "subtype", None) == "second",
            "the second request with id X",
        )
        release.set()
        with anyio.fail_after(5):
            await first_done.wait()
        await anyio.wait_all_tasks_blocked()
        second_go.set()
        await peer.send_frame(req("Z", "ping"))
        written = await answers_until(peer, "Z")
    for_x = [f["response"] for f in written if f["response"]["request_id"] == "X"]
    assert for_x == [{"subtype": "success", "request_id": "X", "response": {"from": "second"}}]


# -- rules 3, 1: a handler that raises gets an error answer, whatever it raises --------------


async def test_a_handler_raising_a_cancelled_error_nobody_sent_is_still_answered() -> None:
    """asyncio code raises CancelledError out of an awaited future that someone else
    cancelled; the CLI did not cancel this request and the session did not close, so the
    rule for a raising handler applies: an error answer, and the session goes on."""

    async def broken(request: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        raise asyncio.CancelledError("the upstream future was cancelled")

    (answer,) = await answers_to_a_raising_handler(broken)
    assert answer["subtype"] == "error"
    assert "upstream future was cancelled" in answer["error"]


async def answers_to_a_raising_handler(broken: Any) -> list[dict[str, Any]]:
    """Every answer written for one request served by ``broken``; a ping after it shows
    the session went on (and is waited for a little longer if it overtook the answer)."""
    transport, peer = memory_transport_pair()
    async with ControlSession(transport, handlers={"broken": broken, "ping": ping}) as session:
        await peer.send_frame(req("A", "broken"))
        await peer.send_frame(req("Z", "ping"))
        written = await answers_until(peer, "Z")
        if not any(f["response"]["request_id"] == "A" for f in written):
            with anyio.move_on_after(2):
                written += await answers_until(peer, "A")
        assert not session.closed
    return [f["response"] for f in written if f["response"]["request_id"] == "A"]


# -- rule 5: memory bounded by the byte budget, also when spilled lines come back -------------


async def test_reading_back_the_spill_file_keeps_memory_within_the_budget(tmp_path: Path) -> None:
    budget = 4096
    longest = 0
    transport, peer = memory_transport_pair()
    async with ControlSession(transport, buffer_bytes=budget, spill_dir=tmp_path) as session:
        for i in range(20_000):  # one line per read: no read is bigger than a line
            data = b'{"type":"assistant","n":%d}' % i
            longest = max(longest, len(data))
            await peer.write(data + b"\n")
        await poll(lambda: len(session._buffer) == 20_000, "all lines queued")
        assert session._buffer.spilled_bytes > 0
        bound = budget + longest + 64  # the budget, plus one line and its overhead
        worst = 0
        seen = 0
        with anyio.fail_after(20):
            async for message in session.messages():
                assert message["n"] == seen
                seen += 1
                worst = max(worst, session._buffer.memory_bytes)
                if seen == 20_000:
                    break
    assert worst <= bound, f"{worst} bytes held in memory with a budget of {budget}"
    assert session._buffer.peak_memory_bytes >= worst, "peak_memory_bytes under-reports"


# -- rules 5, 6: a spill file that fails ends the session; it never spins the event loop ------


async def test_a_failing_spill_file_ends_the_stream_instead_of_spinning(
    tmp_path: Path, anyio_backend: str
) -> None:
    proc = subprocess.Popen(  # noqa: ASYNC220 - a child we must be able to kill
        [sys.executable, str(SPILL_CHILD), str(tmp_path), anyio_backend],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        with anyio.move_on_after(6):  # the child needs well under a second when it works
            while proc.poll() is None:  # noqa: ASYNC110 - waiting for a child, with a deadline
                await anyio.sleep(0.02)
        hung = proc.poll() is None
    finally:
        if proc.poll() is None:
            proc.kill()
        out, err = proc.communicate()
    assert not hung, "messages() spins forever once the spill file cannot be read back"
    text = out.decode()
    assert text.startswith("SessionClosed") or text.startswith("ended cleanly after 3000"), (
        text + err.decode()[-2000:]
    )


# -- rule 4: session end fails every pending request at once, even one still being written ----


async def test_a_request_blocked_writing_fails_at_once_when_the_session_ends(
    tmp_path: Path,
) -> None:
    """The CLI stops reading stdin (our request's write blocks on the full pipe), then
    writes a line over the limit: the session ends, and the pending request must fail at
    once with the reason, not hang until its timeout (here: none)."""
    go = tmp_path / "go"
    steps = [
        {"stop_reading": True},
        {"wait_file": str(go)},
        {"write": '{"type":"assistant","pad":"' + "x" * 5000},
        {"wait_file": str(tmp_path / "never")},
    ]
    transport = SubprocessTransport(
        hostile_argv(tmp_path, steps), max_line_bytes=1024, close_timeout=0.5, terminate_timeout=0.5
    )
    outcome: list[BaseException | dict[str, Any]] = []
    settled = anyio.Event()
    async with (
        transport,
        ControlSession(transport, close_timeout=2) as session,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(ask_big, session, outcome, settled)
        await anyio.wait_all_tasks_blocked()  # the write now waits for the full pipe
        go.touch()
        await poll(lambda: session.closed, "the session to end on the long line")
        with anyio.move_on_after(3):
            await settled.wait()
        failed_at_once = settled.is_set()
        tg.cancel_scope.cancel()
    assert failed_at_once, "the pending request still waits although the session ended"
    (error,) = outcome
    assert isinstance(error, SessionClosed), repr(error)
    assert "max_line_bytes" in str(error)


# -- rule 8 / handler results: any JSON object a handler returns is a JSON object -------------


async def test_a_read_only_mapping_result_is_answered_as_the_object_it_is() -> None:
    """`answer` accepts any Mapping as "a JSON object", then the encoder refuses those that
    are not dicts: a mappingproxy of plain JSON values is answered as an error."""

    async def frozen(request: dict[str, Any], ctx: RequestContext) -> Any:
        return types.MappingProxyType({"behavior": "allow"})

    transport, peer = memory_transport_pair()
    async with ControlSession(transport, handlers={"frozen": frozen}):
        await peer.send_frame(req("F", "frozen"))
        written = await answers_until(peer, "F")
    assert written[-1]["response"] == {
        "subtype": "success",
        "request_id": "F",
        "response": {"behavior": "allow"},
    }


# -- rule 8: size changes nothing, numbers included ------------------------------------------


@pytest.mark.parametrize("digits", [4301, 20_000])
async def test_a_request_carrying_a_long_integer_is_answered(digits: int) -> None:
    """Valid JSON with an integer longer than Python's int/str digit limit (4300): msgspec
    refuses it, the standard library refuses it too, and the request is dropped as
    "unparseable"; the CLI waits for an answer that never comes."""

    async def ok(request: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        return {"ok": True}

    big = b"1" + b"0" * (digits - 1)
    transport, peer = memory_transport_pair()
    async with ControlSession(transport, handlers={"ping": ok}):
        await peer.write(
            b'{"type":"control_request","request_id":"N","request":{"subtype":"ping","v":'
            + big
            + b"}}\n"
        )
        await peer.send_frame(req("Z", "ping"))
        written = await answers_until(peer, "Z")
        if not any(f["response"]["request_id"] == "N" for f in written):
            with anyio.move_on_after(2):
                written += await answers_until(peer, "N")
    answered = [f["response"] for f in written if f["response"]["request_id"] == "N"]
    assert answered == [{"subtype": "success", "request_id": "N", "response": {"ok": True}}]


async def test_a_message_carrying_a_long_integer_is_delivered() -> None:
    transport, peer = memory_transport_pair()
    async with ControlSession(transport) as session:
        await peer.write(b'{"type":"assistant","usage":' + b"9" * 5000 + b"}\n")
        await peer.write(b'{"type":"result"}\n')
        await peer.exit(0)
        got = []
        with anyio.fail_after(5):
            async for message in session.messages():
                got.append(message["type"])
    assert got == ["assistant", "result"]


# -- rule 4: the error that fails a pending request says why ---------------------------------


async def test_a_request_pending_when_the_cli_exits_0_fails_with_its_stderr() -> None:
    """The CLI prints why it gives up and exits 0 with our initialize unanswered: the
    request must fail saying why (exit code and last stderr lines)."""
    transport, peer = memory_transport_pair()
    async with ControlSession(transport) as session, anyio.create_task_group() as tg:
        errors: list[BaseException] = []

        async def initialize() -> None:
            try:
                await session.initialize(timeout=10)
            except Exception as exc:
                errors.append(exc)

        tg.start_soon(initialize)
        with anyio.fail_after(5):
            await peer.receive_frame()
        await peer.send_stderr("Error: Invalid API key - please run /login")
        await peer.exit(0)
    (error,) = errors
    assert isinstance(error, SessionClosed), repr(error)
    assert "exit" in str(error) and "0" in str(error)
    assert "Invalid API key" in str(error), str(error)


async def test_a_request_blocked_writing_fails_with_session_closed_on_aclose(
    tmp_path: Path,
) -> None:
    """`request` promises SessionClosed if the session ends first; aclose while its write
    waits for a full pipe must not surface a transport detail instead."""
    steps = [{"stop_reading": True}, {"wait_file": str(tmp_path / "never")}]
    transport = SubprocessTransport(
        hostile_argv(tmp_path, steps), close_timeout=0.5, terminate_timeout=0.5
    )
    outcome: list[BaseException | dict[str, Any]] = []
    async with transport, ControlSession(transport, close_timeout=2) as session:
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(ask_big, session, outcome, anyio.Event())
                await anyio.wait_all_tasks_blocked()  # the write waits for the full pipe
                await session.aclose()
    (error,) = outcome
    assert isinstance(error, SessionClosed), repr(error)


# -- rule 6: close from any task waits for the handlers it cancels ---------------------------


async def test_close_from_a_task_a_handler_spawned_still_waits_for_the_handlers() -> None:
    """A handler hands work to a long-lived task (a watchdog that later closes the
    session). That task inherits the handler's context variables, so `aclose` takes it
    for a handler and returns without waiting: a cancelled handler is still running its
    cleanup after the close returned."""
    finals: list[str] = []
    running = anyio.Event()
    closed = anyio.Event()
    watchdog_go = anyio.Event()

    async def slow(request: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        running.set()
        try:
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):  # a short async cleanup
                for _ in range(20):
                    await anyio.lowlevel.checkpoint()
                finals.append(ctx.request_id)
        return {}

    async def watchdog() -> None:
        await watchdog_go.wait()
        await session.aclose()
        closed.set()

    async def arm(request: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        tg.start_soon(watchdog)  # a task of the application, started from a handler
        return {}

    transport, peer = memory_transport_pair()
    session = ControlSession(transport, handlers={"slow": slow, "arm": arm}, close_timeout=5)
    async with anyio.create_task_group() as tg, session:
        await peer.send_frame(req("A", "arm"))
        await answers_until(peer, "A")  # the handler that spawned the watchdog is done
        await peer.send_frame(req("S", "slow"))
        with anyio.fail_after(5):
            await running.wait()
        watchdog_go.set()
        with anyio.fail_after(10):
            await closed.wait()
        cleanup_done_when_close_returned = list(finals)
        reader_done_when_close_returned = session._reader._done.is_set()
    assert cleanup_done_when_close_returned == ["S"]
    assert reader_done_when_close_returned


# -- rule 9: a cancel wins until the first byte of the answer has left ------------------------


async def test_a_cancel_wins_over_an_answer_claimed_but_still_waiting_for_the_pipe(
    tmp_path: Path,
) -> None:
    """The pipe to the CLI is exactly full (nothing holds the write lock). The handler's
    answer is allowed by the guard, but its first write finds no room and waits. The CLI
    cancels while not one byte of the answer has left: the guard, asked again before the
    next attempt, must refuse (a one-shot claim once took the cancel for "too late")."""
    import fcntl
    import termios

    filled, go, seen = tmp_path / "filled", tmp_path / "go", tmp_path / "seen"
    final_answer = script_line(
        {
            "type": "control_response",
            "response": {"subtype": "success", "request_id": "{id}", "response": {}},
        }
    )
    steps = [
        {"stop_reading": True},
        {"write": script_line({"type": "assistant", "n": "stopped"})},
        {"wait_file": str(filled)},
        {"write": script_line(req("c1", "ping", v=1))},
        {"wait_file": str(go)},
        {
            "write": script_line(cancel("c1"))
            + script_line({"type": "assistant", "n": "after-cancel"})
        },
        {"wait_file": str(seen)},
        {"resume_reading": True},
        {"await_request": "final"},
        {"write_answer": final_answer},
        {"report": True},
    ]
    decided = anyio.Event()

    async def answer_at_once(request: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        decided.set()
        return {"late": True}

    def queued(fd: int) -> int:
        return int.from_bytes(fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"), "little")

    transport = SubprocessTransport(hostile_argv(tmp_path, steps))
    async with transport, ControlSession(transport, handlers={"ping": answer_at_once}) as session:
        messages = session.messages()
        with anyio.fail_after(20):
            assert (await messages.__anext__())["n"] == "stopped"
            stdin = transport._pipes.stdin  # type: ignore[attr-defined]
            assert stdin is not None
            # The peer's reading thread is parked in one last read: feed it a line.
            await session.send({"type": "user", "n": 0})
            await poll(lambda: queued(stdin) == 0, "the peer's last read")
            # Linux's value: the macOS-stripped run deletes the name, not the kernel call.
            size = fcntl.fcntl(stdin, getattr(fcntl, "F_GETPIPE_SZ", 1032))
            pad = size - len(json.dumps({"type": "user", "pad": ""}, separators=(",", ":"))) - 1
            await session.send({"type": "user", "pad": "x" * pad})  # fills the pipe exactly
            assert queued(stdin) == size
            filled.touch()
            await decided.wait()
            await anyio.wait_all_tasks_blocked()  # the answer waits for room in the pipe
            assert queued(stdin) == size  # not one byte of it has left
            go.touch()
            assert (await messages.__anext__())["n"] == "after-cancel"  # the cancel was read
            seen.touch()
            await session.request({"subtype": "final"}, timeout=20)
            report = await messages.__anext__()
            assert report["type"] == "report"
        await messages.aclose()
    written = [
        f["response"]["request_id"]
        for f in report["received"]
        if f.get("type") == "control_response"
    ]
    assert "c1" not in written


# -- rules 3, 1: an exception whose text cannot be read still yields an error answer ---------


class _NoText(Exception):
    """An exception whose __str__ fails (a library bug, common with custom __init__)."""

    def __init__(self, code: int) -> None:
        super().__init__()
        self.code = code

    def __str__(self) -> str:
        return f"failed with {self.args[0]}"  # IndexError: args is empty


async def test_a_handler_raising_an_exception_with_a_broken_str_is_answered() -> None:
    async def broken(request: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        raise _NoText(7)

    answered = await answers_to_a_raising_handler(broken)
    assert len(answered) == 1 and answered[0]["subtype"] == "error", answered
    assert "_NoText" in answered[0]["error"]


# -- rule 8: a malformed answer to one of our requests fails it at once ----------------------


@pytest.mark.parametrize(
    "shape",
    [
        # the id where older CLIs put it, no id inside the response
        lambda rid: {
            "type": "control_response",
            "request_id": rid,
            "response": {"subtype": "success"},
        },
        # the response body is not an object, the id beside it
        lambda rid: {"type": "control_response", "request_id": rid, "response": "overloaded"},
    ],
    ids=["id-outside-the-response", "response-is-a-string"],
)
async def test_a_malformed_answer_that_names_our_request_fails_it_at_once(shape: Any) -> None:
    transport, peer = memory_transport_pair()
    async with ControlSession(transport) as session, anyio.create_task_group() as tg:
        outcome: list[BaseException | dict[str, Any]] = []
        settled = anyio.Event()

        async def ask() -> None:
            try:
                outcome.append(await session.request({"subtype": "mcp_status"}, timeout=30))
            except Exception as exc:
                outcome.append(exc)
            finally:
                settled.set()

        tg.start_soon(ask)
        with anyio.fail_after(5):
            sent = await peer.receive_frame()
        await peer.send_frame(shape(sent["request_id"]))
        with anyio.move_on_after(3):
            await settled.wait()
        tg.cancel_scope.cancel()
    assert outcome, "the request still waits for its 30 s timeout after a malformed answer"
    assert "malformed" in str(outcome[0]), repr(outcome[0])
