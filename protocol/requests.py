"""The state of each control request in flight, in both directions (no I/O)."""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

from .errors import ControlError, MalformedAnswer


class Outcome(enum.Enum):
    """Where one of our own requests stands."""

    PENDING = "pending"  # written, or about to be; no answer yet
    ANSWERED = "answered"  # a success answer arrived
    FAILED = "failed"  # an error answer, a malformed answer, or the end of the session
    FORGOTTEN = "forgotten"  # the caller stopped waiting (timeout, cancellation)


class OutgoingRequest:
    """One of our requests: settled once, by an answer or by the end of the session
    (`ControlProtocol` reports either as a `ResponseReceived` event)."""

    __slots__ = ("_error", "_result", "line", "outcome", "request_id", "subtype")

    def __init__(self, request_id: str, subtype: str, line: bytearray) -> None:
        self.request_id = request_id
        self.subtype = subtype
        self.line = line
        self.outcome = Outcome.PENDING
        self._result: dict[str, Any] | None = None
        self._error: BaseException | None = None

    def result(self) -> dict[str, Any]:
        """The answer's payload; raises why there is none."""
        if self._error is not None:
            raise self._error
        if self._result is None:
            raise RuntimeError(f"request {self.request_id} is {self.outcome.value}")
        return self._result

    def succeed(self, payload: dict[str, Any]) -> None:
        self._settle(Outcome.ANSWERED, payload, None)

    def fail(self, error: BaseException) -> None:
        self._settle(Outcome.FAILED, None, error)

    def fail_malformed(self, what: str) -> None:
        self.fail(MalformedAnswer(f"malformed answer: {what}", self.request_id, self.subtype))

    def fail_answered(self, message: str) -> None:
        self.fail(ControlError(message, self.request_id, self.subtype))

    def _settle(
        self, outcome: Outcome, result: dict[str, Any] | None, error: BaseException | None
    ) -> None:
        if self.outcome is not Outcome.PENDING:
            return
        self.outcome, self._result, self._error = outcome, result, error


class Stage(enum.Enum):
    """Where one of the CLI's requests stands while it is in flight."""

    RUNNING = "running"  # handed to its handler, which may not have started yet
    DECIDED = "decided"  # its answer is encoded and on its way to the pipe


class IncomingRequest:
    """One of the CLI's requests, from its arrival until it is answered or cancelled."""

    __slots__ = ("request_id", "stage", "subtype")

    def __init__(self, request_id: str, subtype: str, stage: Stage = Stage.RUNNING) -> None:
        self.request_id = request_id
        self.subtype = subtype
        self.stage = stage

    def __repr__(self) -> str:
        return f"IncomingRequest({self.request_id!r}, {self.subtype!r}, {self.stage.value})"


class Answer:
    """An encoded answer that may be written only while its request is still wanted.

    Pass `claim` as the transport's write guard: the transport asks it right before
    each attempt to write while no byte of the answer is out yet, and it is true as
    long as nothing cancelled the request. Once a byte is out the transport finishes
    the line without asking (half a line would corrupt the stream).
    """

    __slots__ = ("_claim", "line", "request")

    def __init__(
        self, request: IncomingRequest, line: bytearray, claim: Callable[[Answer], bool]
    ) -> None:
        self.request = request
        self.line = line
        self._claim = claim

    @property
    def request_id(self) -> str:
        return self.request.request_id

    def claim(self) -> bool:
        return self._claim(self)
