"""The sans-IO protocol core, fed one byte at a time: every dispatcher rule, no task, no pipe."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from ctlwire.protocol import (
    ControlError,
    ControlProtocol,
    Event,
    IncomingRequest,
    MalformedAnswer,
    Messages,
    Outcome,
    RequestCancelled,
    RequestReceived,
    RequestRejected,
    ResponseReceived,
    SessionClosed,
    Stage,
)
from ctlwire.transport import LineFramer


def feed(core: ControlProtocol, data: bytes) -> list[Event]:
    """Bytes one at a time through the line framer into the core; every event, in order."""
    framer = LineFramer()
    events: list[Event] = []
    for i in range(len(data)):
        lines = framer.feed(data[i : i + 1])
        if lines:
            events += core.receive(lines)
    return events + core.receive(framer.end()) if framer.buffered else events


def line(frame: Any) -> bytes:
    return json.dumps(frame).encode() + b"\n"


def request(rid: str, subtype: str = "can_use_tool", **fields: Any) -> bytes:
    return line(
        {"type": "control_request", "request_id": rid, "request": {"subtype": subtype, **fields}}
    )


def cancel(rid: str) -> bytes:
    return line({"type": "control_cancel_request", "request_id": rid})


def success(rid: str, payload: Any) -> bytes:
    body = {"subtype": "success", "request_id": rid, "response": payload}
    return line({"type": "control_response", "response": body})


def received(rid: str, subtype: str, request: dict[str, Any]) -> RequestReceived:
    """The event `receive` makes, for comparing (its entry is not compared)."""
    return RequestReceived(rid, subtype, request, None)  # type: ignore[arg-type]


def messages_of(core: ControlProtocol, events: list[Event]) -> list[dict[str, Any]]:
    return [m for e in events if isinstance(e, Messages) for m in core.decode_messages(e.lines)]


def entry(core: ControlProtocol, rid: str) -> IncomingRequest:
    return core.in_flight[rid]


def answered(core: ControlProtocol, rid: str, result: Any = None) -> dict[str, Any]:
    """Answer ``rid``, claim the write, finish it; the decoded line written."""
    answer = core.answer(entry(core, rid), result if result is not None else {"ok": True})
    assert answer is not None and answer.claim()
    core.answer_done(answer)
    return dict(json.loads(answer.line))


# -- rule 1: every CLI request gets exactly one answer ----------------------------------


def test_a_request_is_answered_once_then_forgotten() -> None:
    core = ControlProtocol()
    events = feed(core, request("r1", tool_name="Write"))
    assert events == [
        received("r1", "can_use_tool", {"subtype": "can_use_tool", "tool_name": "Write"})
    ]
    first = core.in_flight["r1"]
    assert first.stage is Stage.RUNNING
    written = answered(core, "r1", {"behavior": "allow"})
    assert written == {
        "type": "control_response",
        "response": {"subtype": "success", "request_id": "r1", "response": {"behavior": "allow"}},
    }
    assert core.answer(first, {}) is None  # a second answer has nowhere to go
    assert core.in_flight == {}


def test_claim_is_asked_again_while_nothing_is_written_and_refuses_after_a_cancel() -> None:
    core = ControlProtocol()
    feed(core, request("r1"))
    answer = core.answer(entry(core, "r1"), {})
    assert answer is not None
    assert answer.claim() and answer.claim()  # the pipe was full: asked again, still wanted
    feed(core, cancel("r1"))
    assert not answer.claim()


def test_duplicate_id_in_flight_is_reported_and_ignored(caplog: pytest.LogCaptureFixture) -> None:
    core = ControlProtocol()
    assert len(feed(core, request("dup") + request("dup"))) == 1
    assert "duplicate control_request id dup" in caplog.text
    answered(core, "dup")
    assert feed(core, request("dup")) == [
        received("dup", "can_use_tool", {"subtype": "can_use_tool"})
    ]


# -- rule 2: a cancel wins until the answer's first byte leaves ------------------------------


def test_cancel_while_running_stops_the_handler_and_refuses_the_answer() -> None:
    core = ControlProtocol()
    feed(core, request("r1"))
    running = entry(core, "r1")
    assert feed(core, cancel("r1")) == [RequestCancelled("r1")]
    assert core.answer(running, {}) is None and core.answer_error(running, "x") is None
    feed(core, request("r1"))  # the CLI reuses the id: the cancelled handler's late answer
    assert core.answer(running, {"stale": 1}) is None  # never answers the new request
    assert core.answer(entry(core, "r1"), {"fresh": 1}) is not None


def test_cancel_in_the_same_read_as_its_request() -> None:
    core = ControlProtocol()
    events = core.receive([request("r1")[:-1], cancel("r1")[:-1]])
    assert [type(e) for e in events] == [RequestReceived, RequestCancelled]
    assert core.in_flight == {}


def test_cancel_after_the_answer_was_decided_but_before_it_was_written() -> None:
    core = ControlProtocol()
    feed(core, request("r1"))
    answer = core.answer(entry(core, "r1"), {"late": True})
    assert answer is not None and answer.request.stage is Stage.DECIDED
    assert feed(core, cancel("r1")) == [RequestCancelled("r1")]
    assert not answer.claim()  # the transport's guard: nothing is written


def test_a_cancel_after_the_first_byte_left_is_still_reported() -> None:
    core = ControlProtocol()
    feed(core, request("r1"))
    answer = core.answer(entry(core, "r1"), {})
    assert answer is not None and answer.claim()  # the transport wrote the first bytes
    # The transport finishes the line without asking again; the shell must not cut it.
    assert feed(core, cancel("r1")) == [RequestCancelled("r1")]
    core.answer_done(answer)
    assert core.in_flight == {}


def test_cancel_for_unknown_or_finished_ids_is_a_no_op() -> None:
    core = ControlProtocol()
    assert feed(core, cancel("nobody")) == []
    feed(core, request("r1"))
    answered(core, "r1")
    assert feed(core, cancel("r1")) == []


# -- rule 3: a handler that raises produces an error answer ---------------------------------


def test_error_answer_carries_the_text() -> None:
    core = ControlProtocol()
    feed(core, request("r1"))
    answer = core.answer_error(entry(core, "r1"), "boom")
    assert answer is not None and answer.claim()
    body = json.loads(answer.line)["response"]
    assert body == {"subtype": "error", "request_id": "r1", "error": "boom"}


@pytest.mark.parametrize(
    ("result", "text"),
    [([1, 2], "returned list, not a dict"), ({"x": object()}, "not JSON")],
)
def test_a_result_that_is_not_a_json_object_becomes_an_error_answer(result: Any, text: str) -> None:
    core = ControlProtocol()
    feed(core, request("r1"))
    answer = core.answer(entry(core, "r1"), result)
    assert answer is not None
    body = json.loads(answer.line)["response"]
    assert body["subtype"] == "error" and text in body["error"]


# -- rule 4: our own requests --------------------------------------------------------------


def test_our_request_is_settled_by_its_answer_and_late_answers_are_dropped() -> None:
    core = ControlProtocol()
    mine = core.start_request({"subtype": "interrupt"})
    sent = json.loads(mine.line)
    assert sent == {
        "type": "control_request",
        "request_id": mine.request_id,
        "request": {"subtype": "interrupt"},
    }
    assert mine.request_id.startswith("req_1_")
    events = feed(core, success(mine.request_id, {"done": 1}))
    assert events == [ResponseReceived(mine)]
    assert mine.outcome is Outcome.ANSWERED and mine.result() == {"done": 1}
    assert feed(core, success(mine.request_id, {"again": 1})) == []
    other = core.start_request({"subtype": "interrupt"})
    core.forget_request(other)  # timeout or cancelled caller
    assert other.outcome is Outcome.FORGOTTEN and core.pending == {}
    assert feed(core, success(other.request_id, {})) == []


def test_error_answer_to_ours_is_a_control_error() -> None:
    core = ControlProtocol()
    mine = core.start_request({"subtype": "set_model", "model": "x"})
    body = {"subtype": "error", "request_id": mine.request_id, "error": "model not found"}
    feed(core, line({"type": "control_response", "response": body}))
    with pytest.raises(ControlError, match=r"set_model request req_1_\w+ failed: model not found"):
        mine.result()


def test_close_fails_every_pending_request_at_once_with_the_reason() -> None:
    core = ControlProtocol()
    first, second = core.start_request({"subtype": "a"}), core.start_request({"subtype": "b"})
    feed(core, request("theirs"))
    reason = SessionClosed("the session ended", RuntimeError("exit code 3"))
    events = core.close(reason)
    assert [e.request_id for e in events if isinstance(e, RequestCancelled)] == ["theirs"]
    assert [e.request for e in events if isinstance(e, ResponseReceived)] == [first, second]
    for entry in (first, second):
        with pytest.raises(SessionClosed, match="exit code 3"):
            entry.result()
    assert core.pending == {} and core.in_flight == {}
    assert core.receive([request("late")[:-1]]) == []
    with pytest.raises(SessionClosed):
        core.start_request({"subtype": "c"})


# -- rule 7: malformed input is reported and survived ------------------------------------------


def test_malformed_lines_are_skipped_and_what_follows_still_counts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    core = ControlProtocol()
    data = (
        b"[SandboxDebug] not json\n"
        b'{"type": "control_request", garbled\n'
        b'{"type": "control_request", "request": {"subtype": "x"}}\n'
        + request("ok")
        + b'{"type":"assistant","n":1}\n'
    )
    events = feed(core, data)
    assert [e for e in events if not isinstance(e, Messages)] == [
        received("ok", "can_use_tool", {"subtype": "can_use_tool"})
    ]
    assert messages_of(core, events) == [{"type": "assistant", "n": 1}]
    assert "not json" in caplog.text
    assert "garbled" in caplog.text
    assert "control_request without a request_id" in caplog.text


@pytest.mark.parametrize(
    ("frame", "error"),
    [
        ({"type": "control_request", "request_id": "r", "request": {}}, "without request.subtype"),
        ({"type": "control_request", "request_id": "r"}, "without a request object"),
        ({"type": "control_request", "request_id": "r", "request": []}, "request is a list"),
        (
            {"type": "control_request", "request_id": "r", "request": {"subtype": 7}},
            "subtype is a number",
        ),
    ],
)
def test_malformed_request_with_an_id_gets_an_error_answer(frame: Any, error: str) -> None:
    core = ControlProtocol()
    events = feed(core, line(frame))
    assert len(events) == 1 and isinstance(events[0], RequestRejected)
    answer = events[0].answer
    assert answer.claim()
    body = json.loads(answer.line)["response"]
    assert body["subtype"] == "error" and body["request_id"] == "r" and error in body["error"]
    core.answer_done(answer)
    assert core.in_flight == {}


def test_malformed_request_answer_respects_a_cancel() -> None:
    core = ControlProtocol()
    events = feed(core, line({"type": "control_request", "request_id": "r", "request": {}}))
    assert isinstance(events[0], RequestRejected)
    assert feed(core, cancel("r")) == [RequestCancelled("r")]
    assert not events[0].answer.claim()


# -- rule 8: a frame is what its JSON means -----------------------------------------------------


@pytest.mark.parametrize(
    "spelled",
    [
        b'{"type":"control\\u005frequest","request_id":"r1","request":{"subtype":"ping"}}',
        b'{"type":"\\u0063ontrol_request","request_id":"r1","request":{"subtype":"ping"}}',
        b'{"typ\\u0065":"contro\\u006C\\u005Frequest","request_id":"r1","request":{"subtype":"ping"}}',
        b'{"request":{"subtype":"ping"},"request_id":"r1","type":"control_request"}',
        b'  \t{ "type" : "control_request" , "request_id" : "r1" ,'
        b' "request" : { "subtype" : "ping" } }',
        b'\xef\xbb\xbf{"type":"control_request","request_id":"r1","request":{"subtype":"ping"}}',
        b'{"type":"user","type":"control_request","request_id":"r1","request":{"subtype":"ping"}}',
    ],
)
def test_escaped_reordered_or_spaced_requests_are_requests(spelled: bytes) -> None:
    core = ControlProtocol()
    # Between plain messages, so the read as a whole takes the exact path.
    data = b'{"type":"assistant","n":1}\n' + spelled + b'\n{"type":"assistant","n":2}\n'
    events = feed(core, data)
    assert received("r1", "ping", {"subtype": "ping"}) in events
    assert [m["n"] for m in messages_of(core, events)] == [1, 2]


def test_escaped_answers_and_cancels_work() -> None:
    core = ControlProtocol()
    mine = core.start_request({"subtype": "interrupt"})
    spelled = (
        b'{"type":"control_\\u0072esponse","response":{"subtype":"success","request_id":"'
        + mine.request_id.encode()
        + b'","response":{}}}\n'
    )
    assert feed(core, spelled) == [ResponseReceived(mine)]
    feed(core, request("r9"))
    escaped_cancel = b'{"type":"control_\\u0063ancel_request","request_id":"r\\u0039"}\n'
    assert feed(core, escaped_cancel) == [RequestCancelled("r9")]


def test_lone_surrogates_are_delivered_and_answered_as_valid_json() -> None:
    core = ControlProtocol()
    data = (
        b'{"type":"assistant","text":"cut \\ud83d"}\n'
        b'{"type":"control_request","request_id":"s1","request":{"subtype":"can_use_tool",'
        b'"input":{"content":"half \\ude00 emoji"}}}\n'
    )
    events = feed(core, data)
    assert messages_of(core, events) == [{"type": "assistant", "text": "cut \ud83d"}]
    received = next(e for e in events if isinstance(e, RequestReceived))
    echo = {"behavior": "allow", "updatedInput": received.request["input"]}
    written = core.answer(entry(core, "s1"), echo)
    assert written is not None
    text = bytes(written.line).decode("utf-8")  # valid UTF-8
    assert json.loads(text)["response"]["response"]["updatedInput"] == {
        "content": "half \ude00 emoji"
    }


@pytest.mark.parametrize("kind", [["control_request"], 7, None, {"a": 1}, True])
def test_a_type_that_is_not_a_string_is_reported_never_a_crash(
    kind: Any, caplog: pytest.LogCaptureFixture
) -> None:
    core = ControlProtocol()
    data = line({"type": kind, "request_id": "x", "note": "control_request"}) + line(
        {"type": "result"}
    )
    events = feed(core, data)
    assert messages_of(core, events) == [{"type": "result"}]
    assert "skipping frame whose type is" in caplog.text
    no_type = core.decode_messages([b'{"no_type":true}', b'{"type":"keep_alive"}', b'{"type":"x"}'])
    assert no_type == [{"type": "x"}]


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"response": {}}, "'subtype' is null"),
        ({"subtype": "success", "response": [1]}, "'response' is a list, not an object"),
        ({"subtype": "success", "response": "yes"}, "'response' is a string, not an object"),
        ({"subtype": "error", "error": {"code": 1}}, "'error' is an object, not a string"),
        ({"subtype": "error"}, "'error' is null, not a string"),
        ({"subtype": "maybe"}, "'subtype' is 'maybe'"),
    ],
)
def test_a_malformed_answer_fails_our_request_at_once(body: dict[str, Any], problem: str) -> None:
    core = ControlProtocol()
    mine = core.start_request({"subtype": "mcp_status"})
    body = {**body, "request_id": mine.request_id}
    assert feed(core, line({"type": "control_response", "response": body})) == [
        ResponseReceived(mine)
    ]
    with pytest.raises(MalformedAnswer, match="malformed answer") as info:
        mine.result()
    assert problem in str(info.value)
    assert core.pending == {}


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "control_response", "response": [1]},
        {"type": "control_response"},
        {"type": "control_response", "response": {"subtype": "success", "request_id": 5}},
        {"type": "control_cancel_request", "request_id": ["r"]},
        {"type": "control_cancel_request"},
    ],
)
def test_unattributable_control_frames_are_reported(
    frame: Any, caplog: pytest.LogCaptureFixture
) -> None:
    core = ControlProtocol()
    feed(core, request("r"))
    assert feed(core, line(frame)) == []
    assert "malformed control frame" in caplog.text
    assert "r" in core.in_flight


def test_unparseable_but_valid_json_numbers_and_deep_nesting() -> None:
    core = ControlProtocol()
    huge = (
        b'{"type":"control_request","request_id":"n","request":{"subtype":"x","v":1e400,"i":'
        + b"9" * 40
        + b"}}"
    )
    deep = b'{"type":"assistant","d":' + b"[" * 5000 + b"]" * 5000 + b"}"
    events = core.receive([huge, deep, b'{"type":"result"}'])
    assert isinstance(events[0], RequestReceived) and events[0].request["i"] == int("9" * 40)
    assert messages_of(core, events) == [{"type": "result"}]


def test_plain_messages_take_the_fast_path_and_keep_alives_are_dropped() -> None:
    core = ControlProtocol()
    lines = [
        b'{"type":"assistant","n":1}',
        b'{"type":"keep_alive"}',
        b'{"type":"user","t":"\\u001b[0m"}',
    ]
    events = core.receive(lines)
    assert events == [Messages(lines)]
    assert messages_of(core, events) == [
        {"type": "assistant", "n": 1},
        {"type": "user", "t": "\x1b[0m"},
    ]
    keep_alive = b'{"type":"keep_\\u0061live"}'
    assert messages_of(core, core.receive([keep_alive])) == []
