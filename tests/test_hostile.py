"""The adversarial suite: a hostile CLI (a real process) against the dispatcher's rules.

Each case scripts `hostile_peer.py` and asserts a concrete outcome of the rules: what is
answered (exactly once, never after a cancel), what is delivered (in order, nothing
lost), what ends the session (with an error that says why), and that closing is clean
from any task. Every case runs on asyncio and trio.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from helpers import hostile_argv, ping, script_line

from ctlwire.protocol import ControlSession, HookMatcher, RequestContext, SessionClosed
from ctlwire.transport import SubprocessTransport

pytestmark = pytest.mark.anyio


def req(rid: str, subtype: str = "ping", **fields: Any) -> str:
    return script_line(
        {"type": "control_request", "request_id": rid, "request": {"subtype": subtype, **fields}}
    )


async def allow(request: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
    return {"behavior": "allow", "updatedInput": request.get("input")}


HANDLERS = {"ping": ping, "can_use_tool": allow}


async def until_report(session: ControlSession) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Messages up to the peer's report, and the report."""
    got: list[dict[str, Any]] = []
    with anyio.fail_after(20):
        async for message in session.messages():
            if message.get("type") == "report":
                return got, message
            got.append(message)
    raise AssertionError(f"the session ended without a report; got {got}")


def answers(report: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Every answer the SDK wrote, by request id (a list: exactly once means one)."""
    found: dict[str, list[dict[str, Any]]] = {}
    for sent in report["received"]:
        if sent.get("type") == "control_response":
            found.setdefault(sent["response"]["request_id"], []).append(sent["response"])
    return found


# -- bytes and meanings: each case writes hostile bytes, then a plain ping ----------------------

M1 = script_line({"type": "assistant", "n": 1})
BYTES_CASES: dict[str, tuple[str, list[dict[str, Any]], set[str]]] = {
    "escaped request type": (
        '{"type":"control\\u005frequest","request_id":"e1","request":{"subtype":"ping"}}\n',
        [],
        {"e1"},
    ),
    "escaped letters in key and value": (
        '{"\\u0074ype":"\\u0063ontrol_request","request_id":"e2","request":{"subtype":"ping"}}\n',
        [],
        {"e2"},
    ),
    "type last, keys reordered": (
        '{"request":{"v":2,"subtype":"ping"},"request_id":"k1","type":"control_request"}\n',
        [],
        {"k1"},
    ),
    "leading white space and CRLF": (
        '  \t{"type":"control_request","request_id":"w1","request":{"subtype":"ping"}}\r\n',
        [],
        {"w1"},
    ),
    "UTF-8 byte order mark": (
        '\xef\xbb\xbf{"type":"control_request","request_id":"b1","request":{"subtype":"ping"}}\n',
        [],
        {"b1"},
    ),
    "duplicate type key, last wins": (
        '{"type":"assistant","type":"control_request","request_id":"d1","request":{"subtype":"ping"}}\n',
        [],
        {"d1"},
    ),
    "lone surrogate in a message": (
        '{"type":"assistant","text":"cut \\ud83d"}\n',
        [{"type": "assistant", "text": "cut \ud83d"}],
        set(),
    ),
    "NUL and control characters in strings": (
        '{"type":"assistant","text":"a\\u0000b\\u001b[0m"}\n',
        [{"type": "assistant", "text": "a\x00b\x1b[0m"}],
        set(),
    ),
    "a message that only mentions control_request": (
        '{"type":"assistant","text":"see control_request and \\"type\\":\\"control_request\\""}\n',
        [{"type": "assistant", "text": 'see control_request and "type":"control_request"'}],
        set(),
    ),
    "type is a list": (
        '{"type":["control_request"],"request_id":"t1","request":{"subtype":"ping"}}\n' + M1,
        [{"type": "assistant", "n": 1}],
        set(),
    ),
    "type is a number, null, an object": (
        '{"type":7}\n{"type":null}\n{"type":{"control_request":1}}\n' + M1,
        [{"type": "assistant", "n": 1}],
        set(),
    ),
    "escaped keep_alive is dropped": (
        '{"type":"keep\\u005falive"}\n{"type":"keep_alive"}\n' + M1,
        [{"type": "assistant", "n": 1}],
        set(),
    ),
    "big numbers": (
        '{"type":"control_request","request_id":"n1","request":{"subtype":"ping","v":'
        + "9" * 30
        + "}}\n",
        [],
        {"n1"},
    ),
    "deep nesting is skipped, what follows is not": (
        '{"type":"assistant","d":' + "[" * 3000 + "]" * 3000 + "}\n" + M1,
        [{"type": "assistant", "n": 1}],
        set(),
    ),
    "invalid UTF-8 and garbled JSON are skipped": (
        '{"type":"assistant","t":"\xff\xfe"}\n{"type":"control_request", oops\n' + M1,
        [{"type": "assistant", "n": 1}],
        set(),
    ),
    "emoji and long ids are echoed exactly": (
        req("id-\U0001f600") + req("L" * 65536),
        [],
        {"id-\U0001f600", "L" * 65536},
    ),
    "request without subtype gets an error": (
        '{"type":"control_request","request_id":"m1","request":{}}\n',
        [],
        {"m1"},
    ),
    "cancel for an unknown id is a no-op": (
        script_line({"type": "control_cancel_request", "request_id": "nobody"}) + M1,
        [{"type": "assistant", "n": 1}],
        set(),
    ),
}


@pytest.mark.parametrize("case", sorted(BYTES_CASES))
async def test_bytes_mean_what_their_json_means(tmp_path: Path, case: str) -> None:
    data, expected, answered = BYTES_CASES[case]
    steps: list[dict[str, Any]] = [
        {"write": data},
        {"write": req("ping", v=1)},
        {"await_answer": "ping"},
        *({"await_answer": rid} for rid in sorted(answered)),
        {"report": True},
    ]
    async with (
        SubprocessTransport(hostile_argv(tmp_path, steps)) as transport,
        ControlSession(transport, handlers=HANDLERS) as session,
    ):
        got, report = await until_report(session)
    assert got == expected
    found = answers(report)
    assert set(found) == answered | {"ping"}
    assert all(len(a) == 1 for a in found.values()), found
    assert found["ping"][0]["response"] == {"pong": 1}


async def test_lone_surrogates_are_answered_as_valid_json(tmp_path: Path) -> None:
    raw = (
        '{"type":"control_request","request_id":"s1","request":{"subtype":"can_use_tool",'
        '"tool_name":"Write","input":{"content":"half \\ud83d"}}}\n'
    )
    steps = [{"write": raw}, {"await_answer": "s1"}, {"report": True}]
    async with (
        SubprocessTransport(hostile_argv(tmp_path, steps)) as transport,
        ControlSession(transport, handlers=HANDLERS) as session,
    ):
        _, report = await until_report(session)
    answer = answers(report)["s1"]
    assert answer == [
        {
            "subtype": "success",
            "request_id": "s1",
            "response": {"behavior": "allow", "updatedInput": {"content": "half \ud83d"}},
        }
    ]


async def test_a_request_written_one_byte_at_a_time(tmp_path: Path) -> None:
    steps = [{"write_slowly": req("slow", v=3)}, {"await_answer": "slow"}, {"report": True}]
    async with (
        SubprocessTransport(hostile_argv(tmp_path, steps)) as transport,
        ControlSession(transport, handlers=HANDLERS) as session,
    ):
        _, report = await until_report(session)
    assert answers(report)["slow"][0]["response"] == {"pong": 3}


async def test_an_eight_mebibyte_request_is_answered(tmp_path: Path) -> None:
    big = "x" * (8 << 20)
    steps = [{"write": req("big", v=big)}, {"await_answer": "big"}, {"report": True}]
    async with (
        SubprocessTransport(hostile_argv(tmp_path, steps)) as transport,
        ControlSession(transport, handlers=HANDLERS) as session,
    ):
        _, report = await until_report(session)
    assert answers(report)["big"][0]["response"] == {"pong": big}


async def test_a_request_and_its_cancel_in_one_write_never_start(tmp_path: Path) -> None:
    started: list[str] = []

    async def record(request: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        started.append(ctx.request_id)
        return {}

    cancel = script_line({"type": "control_cancel_request", "request_id": "gone"})
    steps = [
        {"write": req("gone") + cancel + req("kept")},
        {"await_answer": "kept"},
        {"report": True},
    ]
    async with (
        SubprocessTransport(hostile_argv(tmp_path, steps)) as transport,
        ControlSession(transport, handlers={"ping": record}) as session,
    ):
        _, report = await until_report(session)
    assert started == ["kept"]
    assert set(answers(report)) == {"kept"}


# -- timing: answers, cancels and closes racing each other and blocked writes -------------------


def hook_request(rid: str) -> str:
    return req(rid, "hook_callback", callback_id="hook_0", input={"tool_name": "Bash"})


FINAL_ANSWER = script_line(
    {
        "type": "control_response",
        "response": {"subtype": "success", "request_id": "{id}", "response": {}},
    }
)


async def test_a_cancel_wins_over_an_answer_waiting_for_the_pipe(tmp_path: Path) -> None:
    go = tmp_path / "go"
    big_started = anyio.Event()

    async def on_hook(inp: dict[str, Any], tool_use_id: str | None, ctx: RequestContext) -> Any:
        await big_started.wait()
        return {"late": True}  # decided while the big write holds the pipe

    steps = [
        {"stop_reading": True},
        {"write": hook_request("h1")},
        {"wait_file": str(go)},
        {"write": script_line({"type": "control_cancel_request", "request_id": "h1"})},
        {"resume_reading": True},
        {"await_request": "final"},
        {"write_answer": FINAL_ANSWER},
        {"report": True},
    ]
    hooks = {"PreToolUse": [HookMatcher(None, [on_hook])]}
    async with (
        SubprocessTransport(hostile_argv(tmp_path, steps)) as transport,
        ControlSession(transport, hooks=hooks) as session,
        anyio.create_task_group() as tg,
    ):

        async def big_send() -> None:
            big_started.set()
            await session.send({"type": "user", "pad": "x" * (4 << 20)})

        tg.start_soon(big_send)
        await big_started.wait()
        await anyio.wait_all_tasks_blocked()  # the answer now waits behind the big write
        go.touch()
        with anyio.fail_after(20):
            await session.request({"subtype": "final"})
        _, report = await until_report(session)
    assert "h1" not in answers(report)


async def test_a_write_cut_part_way_ends_the_session_saying_why(tmp_path: Path) -> None:
    go = tmp_path / "go"
    steps = [
        {"stop_reading": True},
        {"wait_file": str(go)},
        {"write": hook_request("h2")},
        {"resume_reading": True},
        {"drain": True},
    ]

    async def on_hook(inp: dict[str, Any], tool_use_id: str | None, ctx: RequestContext) -> Any:
        return {}

    hooks = {"PreToolUse": [HookMatcher(None, [on_hook])]}
    async with (
        SubprocessTransport(hostile_argv(tmp_path, steps)) as transport,
        ControlSession(transport, hooks=hooks) as session,
    ):
        with anyio.move_on_after(0.3):  # the CLI does not read: the write is cut part-way
            await session.send({"type": "user", "pad": "x" * (4 << 20)})
        go.touch()
        with anyio.fail_after(10), pytest.raises(SessionClosed) as info:
            async for _ in session.messages():
                pass
    assert "cannot answer the CLI's request h2" in str(info.value)
    assert "part-way" in str(info.value)


@pytest.mark.parametrize("spill", [False, True])
async def test_control_traffic_never_waits_behind_unread_messages(
    tmp_path: Path, spill: bool
) -> None:
    served = anyio.Event()

    async def on_hook(inp: dict[str, Any], tool_use_id: str | None, ctx: RequestContext) -> Any:
        served.set()
        return {"continue": True}

    flood = "".join(script_line({"type": "assistant", "n": i}) for i in range(20_000))
    steps = [
        {"write": flood},
        {"write": hook_request("h3")},
        {"await_answer": "h3"},
        {"report": True},
    ]
    hooks = {"PreToolUse": [HookMatcher(None, [on_hook])]}
    options: dict[str, Any] = {"buffer_bytes": 64 * 1024, "spill_dir": tmp_path} if spill else {}
    async with (
        SubprocessTransport(hostile_argv(tmp_path, steps)) as transport,
        ControlSession(transport, hooks=hooks, **options) as session,
    ):
        with anyio.fail_after(20):
            await served.wait()  # nobody has read a single message yet
        got, report = await until_report(session)
    assert [m["n"] for m in got] == list(range(20_000))
    assert answers(report)["h3"][0]["response"] == {"continue": True}


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ('{"subtype":"success","request_id":"{id}","response":[1]}', "'response' is a list"),
        ('{"request_id":"{id}","response":{}}', "'subtype' is null"),
        ('{"subtype":"error","request_id":"{id}","error":{"code":1}}', "'error' is an object"),
        ('{"subtype":"error","request_id":"{id}"}', "'error' is null"),
    ],
)
async def test_a_malformed_answer_fails_our_request_at_once(
    tmp_path: Path, body: str, problem: str
) -> None:
    steps = [
        {"await_request": "mcp_status"},
        {"write_answer": '{"type":"control_response","response":' + body + "}\n"},
        {"drain": True},
    ]
    async with (
        SubprocessTransport(hostile_argv(tmp_path, steps)) as transport,
        ControlSession(transport) as session,
    ):
        with anyio.fail_after(5), pytest.raises(Exception, match="malformed answer") as info:
            await session.request({"subtype": "mcp_status"}, timeout=30)
    assert problem in str(info.value)


async def test_escaped_answer_and_escaped_cancel_are_routed(tmp_path: Path) -> None:
    finals: list[str] = []
    running = anyio.Event()

    async def on_hook(inp: dict[str, Any], tool_use_id: str | None, ctx: RequestContext) -> Any:
        running.set()
        try:
            await anyio.sleep_forever()
        finally:
            finals.append(ctx.request_id)

    steps = [
        {"write": hook_request("h4")},
        {"await_request": "interrupt"},
        {"write": '{"type":"control_\\u0063ancel_request","request_id":"h\\u0034"}\n'},
        {
            "write_answer": '{"type":"control_r\\u0065sponse","response":{"subtype":"success",'
            '"request_id":"{id}","response":{"ok":1}}}\n'
        },
        {"report": True},
    ]
    hooks = {"PreToolUse": [HookMatcher(None, [on_hook])]}
    async with (
        SubprocessTransport(hostile_argv(tmp_path, steps)) as transport,
        ControlSession(transport, hooks=hooks) as session,
    ):
        with anyio.fail_after(10):
            await running.wait()
            assert await session.request({"subtype": "interrupt"}) == {"ok": 1}
        _, report = await until_report(session)
    assert finals == ["h4"]
    assert "h4" not in answers(report)


async def test_cancels_with_our_ids_and_duplicate_or_stray_answers(tmp_path: Path) -> None:
    answer = (
        '{"type":"control_response","response":{"subtype":"success","request_id":"{id}",'
        '"response":{"n":%d}}}\n'
    )
    steps = [
        {"await_request": "mcp_status"},
        {"write_answer": '{"type":"control_cancel_request","request_id":"{id}"}\n'},
        {"write": answer.replace("{id}", "req_999_ffffffff") % 0},
        {"write_answer": answer % 1},
        {"write_answer": answer % 2},
        {"drain": True},
    ]
    async with (
        SubprocessTransport(hostile_argv(tmp_path, steps)) as transport,
        ControlSession(transport) as session,
    ):
        with anyio.fail_after(10):
            assert await session.request({"subtype": "mcp_status"}) == {"n": 1}
            assert not session.closed


async def test_many_requests_and_cancels_exactly_once_never_after_cancel(tmp_path: Path) -> None:
    gate = anyio.Event()

    async def work(request: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        await gate.wait()
        return {"i": request["i"]}

    async def release(request: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        gate.set()  # every cancel before this request has been read
        return {}

    ids = [f"w{i}" for i in range(300)]
    cancelled = set(ids[::3])
    stream = "".join(req(rid, "work", i=n) for n, rid in enumerate(ids))
    stream += "".join(
        script_line({"type": "control_cancel_request", "request_id": r}) for r in sorted(cancelled)
    )
    stream += req("release", "release")
    expected = len(ids) - len(cancelled) + 1
    steps = [{"write": stream}, {"await_lines": expected}, {"report": True}]
    async with (
        SubprocessTransport(hostile_argv(tmp_path, steps)) as transport,
        ControlSession(transport, handlers={"work": work, "release": release}) as session,
    ):
        _, report = await until_report(session)
    found = answers(report)
    assert set(found) == (set(ids) - cancelled) | {"release"}
    assert all(len(a) == 1 for a in found.values())


# -- processes that misbehave ------------------------------------------------------------------


async def test_cli_exits_while_a_handler_runs(tmp_path: Path) -> None:
    finals: list[str] = []
    running = anyio.Event()

    async def slow(request: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        running.set()
        try:
            await anyio.sleep_forever()
        finally:
            finals.append(ctx.request_id)
        return {}

    steps = [{"write": req("p1", "ping")}, {"wait_file": str(tmp_path / "go")}, {"exit": 3}]
    async with (
        SubprocessTransport(hostile_argv(tmp_path, steps)) as transport,
        ControlSession(transport, handlers={"ping": slow}) as session,
    ):
        with anyio.fail_after(10):
            await running.wait()
        (tmp_path / "go").touch()
        with anyio.fail_after(10), pytest.raises(SessionClosed, match="exited with code 3"):
            async for _ in session.messages():
                pass
    assert finals == ["p1"]


async def test_a_stopped_cli_is_still_closed_in_bounded_time(tmp_path: Path) -> None:
    steps = [{"write": script_line({"type": "assistant", "n": 1})}, {"sigstop": True}]
    transport = SubprocessTransport(
        hostile_argv(tmp_path, steps), close_timeout=0.5, terminate_timeout=0.5
    )
    async with transport, ControlSession(transport) as session:
        async for message in session.messages():
            assert message == {"type": "assistant", "n": 1}
            break
    assert transport.returncode == -9


async def test_cli_that_closes_its_stdin_early(tmp_path: Path) -> None:
    steps = [
        {"close_stdin": True},
        {"write": script_line({"type": "assistant", "n": 1}) + hook_request("h5")},
        {"wait_file": str(tmp_path / "never")},
    ]

    async def on_hook(inp: dict[str, Any], tool_use_id: str | None, ctx: RequestContext) -> Any:
        return {}

    hooks = {"PreToolUse": [HookMatcher(None, [on_hook])]}
    transport = SubprocessTransport(hostile_argv(tmp_path, steps), close_timeout=0.5)
    async with transport, ControlSession(transport, hooks=hooks) as session:
        got = []
        with anyio.fail_after(10), pytest.raises(SessionClosed, match="cannot answer"):
            async for message in session.messages():
                got.append(message)
    assert got == [{"type": "assistant", "n": 1}]


async def test_cli_exits_leaving_a_grandchild_holding_its_pipes(tmp_path: Path) -> None:
    steps = [
        {"spawn_holder": True},
        {"write": script_line({"type": "assistant", "n": 1})},
        {"exit": 4},
    ]
    async with (
        SubprocessTransport(hostile_argv(tmp_path, steps)) as transport,
        ControlSession(transport) as session,
    ):
        got = []
        with anyio.fail_after(10), pytest.raises(SessionClosed, match="code 4"):
            async for message in session.messages():
                got.append(message)
    assert got == [{"type": "assistant", "n": 1}]


async def test_line_over_the_limit_fails_a_pending_request_at_once(tmp_path: Path) -> None:
    steps = [{"await_request": "interrupt"}, {"write": '{"type":"assistant","pad":"' + "x" * 5000}]
    transport = SubprocessTransport(hostile_argv(tmp_path, steps), max_line_bytes=1024)
    async with transport, ControlSession(transport) as session:
        with anyio.fail_after(10), pytest.raises(SessionClosed, match="max_line_bytes"):
            await session.request({"subtype": "interrupt"}, timeout=30)


# -- calls from odd places ---------------------------------------------------------------------


async def test_close_from_inside_a_handler(tmp_path: Path) -> None:
    closed = anyio.Event()

    async def close_me(request: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        await session.aclose()
        closed.set()
        return {"never": "written"}

    steps = [{"write": req("c1", "ping")}, {"drain": True}]
    transport = SubprocessTransport(hostile_argv(tmp_path, steps))
    session = ControlSession(transport, handlers={"ping": close_me}, close_timeout=10)
    with anyio.fail_after(5):
        async with transport, session:
            async for _ in session.messages():
                pass
    assert session.closed and transport.returncode is not None
    assert not closed.is_set()  # the handler was cancelled once its close returned


async def test_close_from_many_tasks_at_once(tmp_path: Path) -> None:
    steps = [{"write": script_line({"type": "assistant", "n": 1})}, {"drain": True}]
    transport = SubprocessTransport(hostile_argv(tmp_path, steps))
    session = ControlSession(transport)
    await transport.start()
    await session.start()
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(session.aclose)
    assert transport.returncode == 0


async def test_close_while_initialize_is_pending(tmp_path: Path) -> None:
    steps = [{"await_request": "initialize"}, {"drain": True}]
    transport = SubprocessTransport(hostile_argv(tmp_path, steps))
    async with transport, ControlSession(transport) as session:
        errors: list[BaseException] = []

        async def initialize() -> None:
            try:
                await session.initialize()
            except SessionClosed as exc:
                errors.append(exc)

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(initialize)
                await anyio.wait_all_tasks_blocked()
                await session.aclose()
    assert len(errors) == 1 and "closed" in str(errors[0])


async def test_timeout_then_late_answer_then_a_working_request(tmp_path: Path) -> None:
    ok = (
        '{"type":"control_response","response":{"subtype":"success","request_id":"{id}",'
        '"response":{"k":1}}}\n'
    )
    go = tmp_path / "go"
    steps = [
        {"await_request": "slow"},
        {"wait_file": str(go)},
        {"write_answer": ok},  # late: the caller already gave up
        {"await_request": "fast"},
        {"write_answer": ok},
        {"drain": True},
    ]
    async with (
        SubprocessTransport(hostile_argv(tmp_path, steps)) as transport,
        ControlSession(transport) as session,
    ):
        with pytest.raises(TimeoutError):
            await session.request({"subtype": "slow"}, timeout=0.2)
        go.touch()
        with anyio.fail_after(10):
            assert await session.request({"subtype": "fast"}) == {"k": 1}


@pytest.mark.parametrize(
    ("result", "text"), [(["not", "a", "dict"], "not a dict"), ({"x": object()}, "not JSON")]
)
async def test_a_handler_result_that_is_not_an_object(
    tmp_path: Path, result: Any, text: str
) -> None:
    async def odd(request: dict[str, Any], ctx: RequestContext) -> Any:
        return result

    steps = [{"write": req("o1", "ping")}, {"await_answer": "o1"}, {"report": True}]
    async with (
        SubprocessTransport(hostile_argv(tmp_path, steps)) as transport,
        ControlSession(transport, handlers={"ping": odd}) as session,
    ):
        _, report = await until_report(session)
    (answer,) = answers(report)["o1"]
    assert answer["subtype"] == "error" and text in answer["error"]
