"""The control protocol's rules, with no I/O: lines in, events out, answers allowed or not.

`ControlProtocol` decides everything the dispatcher's rules say: what a line means,
which requests are in flight, whether an answer may still be written, which of our
requests an answer settles (or fails, when it is malformed), and what is reported and
skipped. Its one channel out is the events it returns: it calls nothing of the shell.
`ControlSession` drives it from the pipe, runs the handlers and wakes the waiters.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import FrameDecodeError, MalformedFrame, SessionClosed
from .requests import Answer, IncomingRequest, Outcome, OutgoingRequest, Stage
from .wire import (
    CONTROL_CANCEL,
    CONTROL_REQUEST,
    CONTROL_RESPONSE,
    KEEP_ALIVE,
    ROUTED,
    Frame,
    decode_line,
    decode_lines,
    encode_frame,
    error_frame,
    frame_type,
    is_message,
    json_type,
    may_be_control,
    may_hold_control,
    request_frame,
    success_frame,
)

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class Messages:
    """Message lines, undecoded, in order: for the consumer."""

    lines: list[bytes]


@dataclass(slots=True)
class RequestReceived:
    """The CLI asks something: run the handler for ``subtype``, then `answer` ``entry``
    (the entry, not the id: the CLI may reuse an id once it cancelled the first)."""

    request_id: str
    subtype: str
    request: dict[str, Any]
    entry: IncomingRequest = field(compare=False, repr=False)


@dataclass(slots=True)
class RequestCancelled:
    """The CLI gave up on a request in flight: stop its handler; nothing will be written."""

    request_id: str


@dataclass(slots=True)
class RequestRejected:
    """A malformed CLI request that has an id: write this error answer (guarded)."""

    answer: Answer


@dataclass(slots=True)
class ResponseReceived:
    """One of our requests was settled by the CLI's answer (see its ``outcome``)."""

    request: OutgoingRequest


Event = Messages | RequestReceived | RequestCancelled | RequestRejected | ResponseReceived


class ControlProtocol:
    """One session's protocol state. Feed it `receive`; it never blocks or awaits."""

    def __init__(self) -> None:
        self._incoming: dict[str, IncomingRequest] = {}
        self._outgoing: dict[str, OutgoingRequest] = {}
        self._count = 0
        self._salt = os.urandom(4).hex()
        self._closed: SessionClosed | None = None

    # -- what we can see ------------------------------------------------------------------

    @property
    def in_flight(self) -> dict[str, IncomingRequest]:
        """The CLI's requests not yet answered or cancelled, by id (read-only)."""
        return dict(self._incoming)

    @property
    def pending(self) -> dict[str, OutgoingRequest]:
        """Our requests waiting for an answer, by id (read-only)."""
        return dict(self._outgoing)

    @property
    def closed(self) -> SessionClosed | None:
        return self._closed

    # -- lines in -------------------------------------------------------------------------

    def receive(self, lines: list[bytes]) -> list[Event]:
        """Everything one read of stdout means, in order."""
        if self._closed is not None:
            return []
        if not may_hold_control(lines):
            return [Messages(lines)]
        events: list[Event] = []
        run: list[bytes] = []
        for line in lines:
            if not may_be_control(line):
                run.append(line)
                continue
            try:
                frame = decode_line(line)
            except FrameDecodeError as exc:
                logger.warning("skipping malformed stdout line: %s", exc)
                continue
            if frame is None:
                continue
            kind = frame_type(frame)
            if kind is None:
                _report_untyped(frame)
            elif kind in ROUTED:
                if run:
                    events.append(Messages(run))
                    run = []
                event = self._route(kind, frame)
                if event is not None:
                    events.append(event)
            else:
                run.append(line)
        if run:
            events.append(Messages(run))
        return events

    def decode_messages(self, lines: list[bytes]) -> list[Frame]:
        """The messages among lines `receive` passed on: decoded, keep-alives dropped,
        frames without a string ``type`` reported and skipped."""
        frames = decode_lines(lines)
        for frame in frames:
            kind = frame.get("type")
            if kind.__class__ is not str or kind == KEEP_ALIVE:
                return [frame for frame in frames if _for_consumer(frame)]
        return frames

    def _route(self, kind: str, frame: Frame) -> Event | None:
        try:
            if kind == CONTROL_REQUEST:
                return self._on_request(frame)
            if kind == CONTROL_RESPONSE:
                return self._on_response(frame)
            if kind == CONTROL_CANCEL:
                return self._on_cancel(frame)
        except MalformedFrame as exc:
            logger.warning("malformed control frame: %s", exc)
        return None  # keep_alive: nothing to do

    def _on_request(self, frame: Frame) -> Event | None:
        request_id = frame.get("request_id")
        if type(request_id) is not str:
            raise MalformedFrame(
                f"control_request {_lacks('a request_id', frame, 'request_id')}", frame
            )
        if request_id in self._incoming:
            raise MalformedFrame(
                f"duplicate control_request id {request_id} ignored while the first is in flight",
                frame,
            )
        request = frame.get("request")
        subtype = request.get("subtype") if type(request) is dict else None
        if type(request) is not dict or type(subtype) is not str:
            what = (
                _lacks("request.subtype", request, "subtype")
                if type(request) is dict
                else _lacks("a request object", frame, "request", "an object")
            )
            error = MalformedFrame(f"control_request {what}", frame, request_id)
            logger.warning("malformed control frame: %s", error)
            entry = self._incoming[request_id] = IncomingRequest(request_id, "", Stage.DECIDED)
            line = encode_frame(error_frame(request_id, error.detail))
            return RequestRejected(Answer(entry, line, self._claim))
        entry = self._incoming[request_id] = IncomingRequest(request_id, subtype)
        return RequestReceived(request_id, subtype, request, entry)

    def _on_cancel(self, frame: Frame) -> Event | None:
        request_id = frame.get("request_id")
        if type(request_id) is not str:
            what = _lacks("a request_id", frame, "request_id")
            raise MalformedFrame(f"invalid control_cancel_request: {what}", frame)
        entry = self._incoming.get(request_id)
        if entry is None:
            logger.debug("cancel for unknown or finished request %s ignored", request_id)
            return None
        del self._incoming[request_id]
        return RequestCancelled(request_id)

    def _on_response(self, frame: Frame) -> Event | None:
        body = frame.get("response")
        if type(body) is not dict:
            what = _lacks("a response object", frame, "response", "an object")
            return self._fail_named(frame, f"invalid control_response: {what}")
        request_id = body.get("request_id")
        if type(request_id) is not str:
            what = _lacks("response.request_id", body, "request_id")
            return self._fail_named(frame, f"invalid control_response: {what}")
        entry = self._outgoing.pop(request_id, None)
        if entry is None:
            logger.debug("dropping response for unknown or forgotten id %s", request_id)
            return None
        subtype = body.get("subtype")
        if subtype == "success":
            payload = body.get("response")
            if payload is None:
                entry.succeed({})
            elif type(payload) is dict:
                entry.succeed(payload)
            else:
                entry.fail_malformed(
                    f"'response' is {json_type(payload, phrase=True)}, not an object"
                )
        elif subtype == "error":
            message = body.get("error")
            if type(message) is str:
                entry.fail_answered(message)
            else:
                entry.fail_malformed(f"'error' is {json_type(message, phrase=True)}, not a string")
        else:
            entry.fail_malformed(
                f"'subtype' is {subtype!r}, not 'success' or 'error'"
                if type(subtype) is str
                else f"'subtype' is {json_type(subtype, phrase=True)}, not 'success' or 'error'"
            )
        return ResponseReceived(entry)

    def _fail_named(self, frame: Frame, what: str) -> Event | None:
        """A response too malformed to route: if it names one of our requests anyway (an
        id beside the body), fail that request now rather than at its timeout."""
        request_id = frame.get("request_id")
        entry = self._outgoing.pop(request_id, None) if type(request_id) is str else None
        if entry is None:
            raise MalformedFrame(what, frame)
        logger.warning("malformed control frame: %s", MalformedFrame(what, frame))
        entry.fail_malformed(what.removeprefix("invalid control_response: "))
        return ResponseReceived(entry)

    # -- our requests ---------------------------------------------------------------------

    def start_request(self, request: Mapping[str, Any]) -> OutgoingRequest:
        """Open one of our requests under a fresh id; write its ``line``, then wait for
        `ResponseReceived` (or the end of the session)."""
        subtype = request.get("subtype")
        if not isinstance(subtype, str):
            raise ValueError("a control request needs a string 'subtype'")
        if self._closed is not None:
            raise SessionClosed(self._closed.reason, self._closed.cause)
        self._count += 1
        request_id = f"req_{self._count}_{self._salt}"
        entry = OutgoingRequest(
            request_id, subtype, encode_frame(request_frame(request_id, request))
        )
        self._outgoing[request_id] = entry
        return entry

    def forget_request(self, entry: OutgoingRequest) -> None:
        """The caller stopped waiting: a late answer will be dropped."""
        if self._outgoing.get(entry.request_id) is entry:
            del self._outgoing[entry.request_id]
        if entry.outcome is Outcome.PENDING:
            entry.outcome = Outcome.FORGOTTEN

    # -- answering the CLI ----------------------------------------------------------------

    def answer(self, request: IncomingRequest, result: object) -> Answer | None:
        """The handler's result, encoded; None if the request was cancelled meanwhile.
        A result that is not a JSON object becomes an error answer saying so."""
        if result is None:
            result = {}
        if not isinstance(result, Mapping):
            return self.answer_error(
                request, f"the handler returned {type(result).__name__}, not a dict"
            )
        try:
            line = encode_frame(success_frame(request.request_id, result))
        except (TypeError, ValueError) as exc:
            return self.answer_error(request, f"the handler's answer is not JSON: {exc}")
        return self._decide(request, line)

    def answer_error(self, request: IncomingRequest, message: str) -> Answer | None:
        """An error answer (a handler raised, or none exists); None if cancelled."""
        return self._decide(request, encode_frame(error_frame(request.request_id, message)))

    def _decide(self, request: IncomingRequest, line: bytearray) -> Answer | None:
        if self._incoming.get(request.request_id) is not request:
            return None  # cancelled, or already answered
        if request.stage is not Stage.RUNNING:
            return None
        request.stage = Stage.DECIDED
        return Answer(request, line, self._claim)

    def _claim(self, answer: Answer) -> bool:
        """Whether the answer may still go out: its request was not cancelled."""
        return self._incoming.get(answer.request.request_id) is answer.request

    def answer_done(self, answer: Answer) -> None:
        """The answer was written, or will never be (cancelled, or the write failed)."""
        entry = answer.request
        if self._incoming.get(entry.request_id) is entry:
            del self._incoming[entry.request_id]

    # -- the end --------------------------------------------------------------------------

    def close(self, reason: SessionClosed) -> list[Event]:
        """End the session: drop the CLI's requests in flight (a `RequestCancelled` each:
        their handlers must stop) and fail every pending request of ours with ``reason``
        (a `ResponseReceived` each: their callers must wake)."""
        if self._closed is not None:
            return []
        self._closed = reason
        incoming, self._incoming = self._incoming, {}
        events: list[Event] = [RequestCancelled(request_id) for request_id in incoming]
        outgoing, self._outgoing = self._outgoing, {}
        for entry in outgoing.values():
            entry.fail(SessionClosed(reason.reason, reason.cause))
            events.append(ResponseReceived(entry))
        return events


def _lacks(name: str, holder: dict[str, Any], key: str, want: str = "a string") -> str:
    """``without NAME``, or ``whose KEY is TYPE, not WANT``: what a malformed field lacks."""
    if key not in holder:
        return f"without {name}"
    return f"whose {key} is {json_type(holder[key], phrase=True)}, not {want}"


def _for_consumer(frame: Frame) -> bool:
    """Whether a decoded frame is a message; one without a string type is reported."""
    if is_message(frame):
        return True
    if frame_type(frame) is None:
        _report_untyped(frame)
    return False


def _report_untyped(frame: Frame) -> None:
    """Log a frame without a string ``type`` as skipped."""
    logger.warning(
        "skipping frame whose type is %s: %s",
        json_type(frame["type"], phrase=True) if "type" in frame else "missing",
        MalformedFrame("frame without a string type", frame),
    )
