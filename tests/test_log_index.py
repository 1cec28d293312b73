"""The index of a log's control traffic: which record answers or cancels which request."""

from __future__ import annotations

from ctlwire.fixtures import records as r
from ctlwire.fixtures.index import LogIndex
from ctlwire.fixtures.log import Record, SessionLog


def index_of(*records: Record) -> LogIndex:
    return LogIndex(SessionLog(r.header(), list(records), list(range(1, len(records) + 1))))


def test_ids_link_in_both_directions() -> None:
    index = index_of(
        r.sdk(r.request("req_1", "initialize", hooks=None)),  # 0
        r.cli(r.request("u-1", "can_use_tool", tool_name="Bash")),  # 1
        r.cli(r.success("req_1", {"commands": []})),  # 2
        r.sdk(r.success("u-1", {"behavior": "allow"})),  # 3
        r.cli(r.assistant("done")),  # 4
        r.cli_exit(0),  # 5
    )
    ours, theirs = index.get("sdk", "req_1"), index.get("cli", "u-1")
    assert ours is not None and theirs is not None
    assert (ours.request, ours.subtype, ours.answers, ours.answer) == (0, "initialize", [2], 2)
    assert (theirs.request, theirs.subtype, theirs.answer) == (1, "can_use_tool", 3)
    assert index.by_record == {0: ours, 1: theirs, 2: ours, 3: theirs}
    assert [e.key for e in index.asked_by("cli")] == [("cli", "u-1")]
    assert index.initialize == 0
    assert index.initialize_request() == {"subtype": "initialize", "hooks": None}
    assert (index.messages, index.exit, index.exit_code) == ([4], 5, 0)
    assert index.requests == [0, 1] and index.cancels == []
    assert not (index.unresolved() or index.unknown_ids() or index.answered_twice())


def test_the_same_id_in_each_direction_is_two_requests() -> None:
    index = index_of(
        r.sdk(r.request("7", "interrupt")),
        r.cli(r.request("7", "hook_callback", callback_id="hook_0")),
        r.sdk(r.success("7", {"continue": True})),  # answers the CLI's 7
        r.cli(r.error("7", "nothing to interrupt")),  # answers ours
    )
    ours, theirs = index.get("sdk", "7"), index.get("cli", "7")
    assert ours is not None and theirs is not None
    assert (ours.subtype, ours.answer) == ("interrupt", 3)
    assert (theirs.subtype, theirs.answer) == ("hook_callback", 2)


def test_a_cancel_settles_the_request_and_a_later_answer_is_late() -> None:
    index = index_of(
        r.cli(r.request("h", "hook_callback", callback_id="hook_0")),
        r.cli(r.cancel("h")),
        r.sdk(r.success("h", {})),
    )
    exchange = index.get("cli", "h")
    assert exchange is not None
    assert (exchange.cancel, exchange.answer, exchange.cancelled) == (1, None, True)
    assert exchange.late_answers == [2]
    assert index.answered_after_cancel() == [exchange]
    assert index.unresolved() == [] and index.cancels == [1]


def test_an_answer_before_the_cancel_wins() -> None:
    index = index_of(
        r.cli(r.request("h", "can_use_tool")),
        r.sdk(r.success("h", {"behavior": "allow"})),
        r.cli(r.cancel("h")),
    )
    exchange = index.get("cli", "h")
    assert exchange is not None
    assert (exchange.answer, exchange.cancelled, exchange.late_answers) == (1, False, [])


def test_answers_and_cancels_to_ids_nobody_asked() -> None:
    index = index_of(r.sdk(r.success("ghost", {})), r.cli(r.cancel("phantom")))
    ghost, phantom = index.get("cli", "ghost"), index.get("cli", "phantom")
    assert ghost is not None and phantom is not None
    assert (ghost.request, ghost.answers) == (None, [0])
    assert (phantom.request, phantom.cancel) == (None, 1)
    assert index.unknown_ids() == [ghost, phantom]
    assert index.asked_by("cli") == [] and index.requests == []


def test_duplicate_answers_keep_the_first() -> None:
    index = index_of(
        r.cli(r.request("m", "mcp_message", server_name="s", message={})),
        r.sdk(r.success("m", {"mcp_response": {}})),
        r.sdk(r.error("m", "again")),
    )
    exchange = index.get("cli", "m")
    assert exchange is not None
    assert (exchange.answers, exchange.answer) == ([1, 2], 1)
    assert index.answered_twice() == [exchange]


def test_unresolved_requests_answers_before_asking_and_no_exit() -> None:
    index = index_of(
        r.sdk(r.success("early", {})),
        r.cli(r.request("early", "can_use_tool")),
        r.cli(r.request("lost", "can_use_tool")),
        r.cli(r.result()),
    )
    early = index.get("cli", "early")
    assert early is not None and early.early_answers == [0]
    assert index.answered_before_asked() == [early]
    assert [e.request_id for e in index.unresolved()] == ["lost"]
    assert (index.exit, index.exit_code, index.initialize) == (None, None, None)
    assert index.initialize_request() == {}


def test_non_control_and_malformed_frames_are_not_indexed() -> None:
    index = index_of(
        r.cli({"type": "keep_alive"}),
        r.cli({"type": "control_request", "request": {"subtype": "x"}}),  # no id
        r.cli({"type": "control_response", "response": "not an object"}),
        r.cli_line("[SandboxDebug] hi"),
        r.cli(r.user("echo")),
    )
    assert index.exchanges == {} and index.by_record == {}
    assert index.messages == [4]
