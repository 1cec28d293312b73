"""A hypothesis state machine over the protocol core: any interleaving of the CLI's
requests, cancels and answers, our requests, handler results, write completions delayed
arbitrarily and close keeps exactly-once, never-after-cancel, and leaves nothing behind."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from ctlwire.protocol import (
    Answer,
    ControlError,
    ControlProtocol,
    Outcome,
    OutgoingRequest,
    RequestCancelled,
    RequestReceived,
    RequestRejected,
    ResponseReceived,
    SessionClosed,
)

IDS = st.sampled_from(["a", "b", "c", "d"])
ANSWER_BODIES = st.sampled_from(
    [
        {"subtype": "success", "response": {"ok": 1}},
        {"subtype": "success"},
        {"subtype": "error", "error": "no"},
        {"subtype": "success", "response": [1]},  # malformed: not an object
        {"subtype": "error", "error": 3},  # malformed: not a string
        {},  # malformed: no subtype
    ]
)


def line(frame: Any) -> bytes:
    return json.dumps(frame).encode()


class CoreModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.core = ControlProtocol()
        self.running: set[str] = set()  # CLI requests whose handler runs (the model's view)
        self.entries: dict[str, Any] = {}  # id -> the entry its handler answers
        self.cancelled: set[str] = set()  # ids cancelled while in flight, until reused
        self.decided: list[Answer] = []  # answers waiting for the pipe
        self.written: dict[str, int] = {}  # id -> answers written for its current instance
        self.ours: list[OutgoingRequest] = []
        self.settles: dict[str, int] = {}
        self.closed = False

    def _receive(self, frame: Any) -> list[Any]:
        events = self.core.receive([line(frame)])
        for event in events:
            if isinstance(event, RequestReceived):
                self.entries[event.request_id] = event.entry
                self.running.add(event.request_id)
                self.cancelled.discard(event.request_id)
                self.written[event.request_id] = 0
            elif isinstance(event, RequestCancelled):
                self.running.discard(event.request_id)
                self.cancelled.add(event.request_id)
            elif isinstance(event, RequestRejected):
                self.written[event.answer.request_id] = 0
                self.cancelled.discard(event.answer.request_id)
                self.decided.append(event.answer)
            elif isinstance(event, ResponseReceived):
                self.settles[event.request.request_id] += 1
        return events

    @rule(rid=IDS, subtype=st.sampled_from(["can_use_tool", "hook_callback", None]))
    def cli_request(self, rid: str, subtype: str | None) -> None:
        request = {"subtype": subtype} if subtype else {}
        in_flight = rid in self.core.in_flight
        events = self._receive({"type": "control_request", "request_id": rid, "request": request})
        if in_flight or self.closed:
            assert events == []  # a duplicate while in flight (or after close) is ignored

    @rule(rid=IDS)
    def cli_cancel(self, rid: str) -> None:
        entry = self.core.in_flight.get(rid)
        events = self._receive({"type": "control_cancel_request", "request_id": rid})
        assert (events == []) == (entry is None)

    @rule(rid=IDS, raised=st.booleans())
    def handler_finishes(self, rid: str, raised: bool) -> None:
        entry = self.entries.get(rid)
        if rid not in self.running:
            if entry is not None:  # a cancelled or finished handler's answer goes nowhere
                assert self.core.answer(entry, {}) is None
            return
        self.running.discard(rid)
        answer = (
            self.core.answer_error(entry, "x") if raised else self.core.answer(entry, {"r": rid})
        )
        assert answer is not None
        self.decided.append(answer)

    @precondition(lambda self: self.decided)
    @rule(pick=st.integers(0, 100), first_byte_out=st.booleans())
    def write_attempt(self, pick: int, first_byte_out: bool) -> None:
        """The transport asks the guard before an attempt; the attempt writes the first
        bytes (then the line is finished without asking again) or nothing (pipe full)."""
        answer = self.decided.pop(pick % len(self.decided))
        if not answer.claim():
            self.core.answer_done(answer)  # refused: the write never happens
            return
        assert answer.request_id not in self.cancelled, "written after its cancel"
        if first_byte_out:
            self.written[answer.request_id] += 1
            assert self.written[answer.request_id] == 1, "answered twice"
            self.core.answer_done(answer)
        else:
            self.decided.append(answer)  # still waiting for the pipe

    @precondition(lambda self: not self.closed)
    @rule()
    def our_request(self) -> None:
        entry = self.core.start_request({"subtype": "mcp_status"})
        self.settles[entry.request_id] = 0
        self.ours.append(entry)

    @precondition(lambda self: self.ours)
    @rule(pick=st.integers(0, 100), body=ANSWER_BODIES)
    def cli_answers_ours(self, pick: int, body: dict[str, Any]) -> None:
        entry = self.ours[pick % len(self.ours)]
        frame = {"type": "control_response", "response": {**body, "request_id": entry.request_id}}
        self._receive(frame)
        if entry.outcome is Outcome.FAILED:
            try:
                entry.result()
            except (ControlError, SessionClosed):
                pass
            else:
                raise AssertionError("a failed request returned a result")

    @precondition(lambda self: self.ours)
    @rule(pick=st.integers(0, 100))
    def caller_gives_up(self, pick: int) -> None:
        self.core.forget_request(self.ours[pick % len(self.ours)])

    @rule()
    def close(self) -> None:
        in_flight = set(self.core.in_flight)
        events = self.core.close(SessionClosed("closed by the model"))
        for event in events:
            if isinstance(event, ResponseReceived):
                self.settles[event.request.request_id] += 1
        stopped = [e.request_id for e in events if isinstance(e, RequestCancelled)]
        assert set(stopped) == (set() if self.closed else in_flight)
        assert self.running <= set(stopped) or self.closed
        self.closed = True
        self.running.clear()

    @invariant()
    def each_of_ours_settles_at_most_once(self) -> None:
        assert all(n <= 1 for n in self.settles.values())
        for entry in self.ours:
            settled = self.settles[entry.request_id] == 1
            assert settled == (entry.outcome in (Outcome.ANSWERED, Outcome.FAILED))

    @invariant()
    def nothing_left_behind(self) -> None:
        if self.closed:
            assert self.core.pending == {} and self.core.in_flight == {}
            assert all(e.outcome is not Outcome.PENDING for e in self.ours)
        waiting = {a.request_id for a in self.decided}
        assert set(self.core.in_flight) <= self.running | waiting

    def teardown(self) -> None:
        self.core.close(SessionClosed("end of the run"))
        for entry in self.ours:
            assert entry.outcome is not Outcome.PENDING, "a request of ours never settled"


CoreModel.TestCase.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)
TestCoreModel = CoreModel.TestCase
