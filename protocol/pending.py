"""Sans-IO request-id bookkeeping for both directions of the control protocol."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

from .errors import ControlError
from .wire import ResponseBody

logger = logging.getLogger(__name__)


class OutgoingRequest:
    """One of our requests: resolved once, by a response or by the end of the session."""

    __slots__ = ("_error", "_result", "_wake", "request_id", "subtype")

    def __init__(self, request_id: str, subtype: str, wake: Callable[[], object]) -> None:
        self.request_id = request_id
        self.subtype = subtype
        self._wake = wake
        self._result: dict[str, Any] | None = None
        self._error: BaseException | None = None

    @property
    def done(self) -> bool:
        return self._result is not None or self._error is not None

    def result(self) -> dict[str, Any]:
        """The response payload; raises the failure. Only valid once ``done``."""
        if self._error is not None:
            raise self._error
        if self._result is None:
            raise RuntimeError(f"request {self.request_id} has not been answered")
        return self._result

    def _settle(self, result: dict[str, Any] | None, error: BaseException | None) -> None:
        self._result, self._error = result, error
        self._wake()


class OutgoingRequests:
    """Our requests waiting for the CLI's answer, by the ids we made up."""

    def __init__(self) -> None:
        self._entries: dict[str, OutgoingRequest] = {}
        self._count = 0
        self._salt = os.urandom(4).hex()

    def __len__(self) -> int:
        return len(self._entries)

    def new_id(self) -> str:
        """A fresh id in the reference's shape, ``req_<n>_<8 hex>``."""
        self._count += 1
        return f"req_{self._count}_{self._salt}"

    def open(self, request_id: str, subtype: str, wake: Callable[[], object]) -> OutgoingRequest:
        if request_id in self._entries:
            raise ValueError(f"request id {request_id!r} is already pending")
        entry = self._entries[request_id] = OutgoingRequest(request_id, subtype, wake)
        return entry

    def resolve(self, body: ResponseBody) -> bool:
        """Settle the request ``body`` answers; False (and a debug log) for an unknown id."""
        entry = self._entries.pop(body.request_id, None)
        if entry is None:
            logger.debug("dropping response for unknown or forgotten id %s", body.request_id)
            return False
        if body.subtype == "success":
            entry._settle(body.response if body.response is not None else {}, None)
        else:
            message = body.error if body.error is not None else f"{body.subtype} response"
            entry._settle(None, ControlError(message, body.request_id, entry.subtype))
        return True

    def forget(self, request_id: str) -> None:
        """Drop an entry whose caller stopped waiting (timeout, cancellation)."""
        self._entries.pop(request_id, None)

    def fail_all(self, error: Callable[[], BaseException]) -> None:
        """Fail every pending request with a fresh ``error()``."""
        entries, self._entries = self._entries, {}
        for entry in entries.values():
            entry._settle(None, error())


class Cancellable(Protocol):
    def _cancel(self) -> None: ...


C = TypeVar("C", bound=Cancellable)


class IncomingRequests(Generic[C]):
    """The CLI's requests in flight, by its ids: who may still answer, and who was cancelled.

    A request leaves the table either when its answer is about to be written (`finish`)
    or when the CLI cancels it (`cancel`); whichever comes first wins, so each id is
    answered at most once and never after its cancel was read.
    """

    def __init__(self) -> None:
        self._entries: dict[str, C] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, request_id: str) -> bool:
        return request_id in self._entries

    def begin(self, request_id: str, context: C) -> bool:
        """Track a new request; False if that id is already in flight."""
        if request_id in self._entries:
            return False
        self._entries[request_id] = context
        return True

    def cancel(self, request_id: str) -> C | None:
        """The CLI gave up on ``request_id``: cancel and forget it (None if unknown)."""
        context = self._entries.pop(request_id, None)
        if context is None:
            logger.debug("cancel for unknown or finished request %s ignored", request_id)
        else:
            context._cancel()
        return context

    def finish(self, request_id: str, context: C) -> bool:
        """Claim the right to answer; False if the request was cancelled meanwhile."""
        if self._entries.get(request_id) is not context:
            return False
        del self._entries[request_id]
        return True

    def cancel_all(self) -> None:
        entries, self._entries = self._entries, {}
        for context in entries.values():
            context._cancel()
