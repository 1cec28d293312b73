"""ControlSession: the async shell around `ControlProtocol`.

It reads the transport in a task of its own, hands each read to the protocol core, runs
handlers for the CLI's requests, and writes what the core allows. Every rule lives in
the core; this module owns tasks, waiting and closing, from any task, on any backend.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

import anyio
import anyio.lowlevel

from ctlwire.transport import (
    AsyncResource,
    DetachedTask,
    InputClosed,
    TaskPool,
    Transport,
    TransportError,
)

from . import core
from .buffer import MessageBuffer, SpillError
from .context import RequestContext, attach_task, stop
from .core import ControlProtocol
from .errors import RequestTimeout, SessionClosed
from .hooks import HookMatcher, HookRegistry
from .raised import describe, going_up
from .requests import Answer, Outcome, OutgoingRequest
from .wire import Frame, encode_frame

logger = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any], RequestContext], Awaitable[dict[str, Any]]]

# messages() decodes queued raw lines this many at a time.
DECODE_RUN = 64
# How long the CLI may take to exit after closing its stdout before we call it a failure.
EXIT_AFTER_EOF_TIMEOUT = 1.0
DEFAULT_BUFFER_BYTES = 16 * 2**20


def _missing_members(transport: object) -> list[str]:
    """What ``transport`` lacks of the `Transport` interface (a clear error beats a
    failure deep inside the reader)."""
    wanted = {name for name in dir(Transport) if not name.startswith("_")}
    wanted |= set(Transport.__annotations__)
    return sorted(name for name in wanted if not hasattr(transport, name))


class ControlSession(AsyncResource):
    """Speaks the control protocol over a transport.

    ``handlers`` maps a CLI request subtype to ``async (request, ctx) -> dict``;
    ``hooks`` registers hook callbacks, served as ``hook_callback`` requests. The reader
    never waits for the consumer: messages nobody has taken yet are kept as raw lines,
    in memory up to ``buffer_bytes``, past that in a temporary file in ``spill_dir``.

    A session ends one way, `_end`, whoever ends it; `aclose` then releases what it holds:

    ======  ================================  =========================================
    state   entered by                        what holds
    ======  ================================  =========================================
    new     the constructor                   nothing runs; `start` (or ``async with``)
    open    `start`                           the reader runs; requests and writes go
    ended   `_end`: the CLI's output ended,   ``closed`` is true; our requests failed
            the transport failed, an answer   with the reason, handlers cancelled,
            or a message could not be kept,   the reader stopping; `messages` yields
            or `aclose`                       what is left, then ends (or raises)
    closed  `aclose`, after `_end`            reader done, transport closed, unread
                                              messages dropped
    ======  ================================  =========================================
    """

    def __init__(
        self,
        transport: Transport,
        handlers: Mapping[str, Handler] | None = None,
        hooks: Mapping[str, Sequence[HookMatcher]] | None = None,
        *,
        buffer_bytes: int = DEFAULT_BUFFER_BYTES,
        spill_dir: str | os.PathLike[str] | None = None,
        close_timeout: float = 5.0,
    ) -> None:
        missing = _missing_members(transport)
        if missing:
            raise TypeError(
                f"transport must be a ctlwire Transport; {type(transport).__name__} lacks "
                + ", ".join(missing)
            )
        if not close_timeout >= 0:  # NaN too, as the transport says
            raise ValueError(
                f"close_timeout must be a number of seconds >= 0, not {close_timeout!r}"
            )
        self._transport = transport
        self._hooks = HookRegistry(hooks)
        self._handlers: dict[str, Handler] = {"hook_callback": self._serve_hook}
        for subtype, handler in (handlers or {}).items():
            if not callable(handler):
                raise TypeError(f"the handler for {subtype!r} is not callable")
            self._handlers[subtype] = handler
        self._close_timeout = close_timeout
        self._protocol = ControlProtocol()
        self._buffer = MessageBuffer(buffer_bytes, spill_dir)
        # Decoded messages not handed out yet: a consumer that stops part-way through a
        # run leaves the rest, in order, to the next one.
        self._decoded: deque[Frame] = deque()
        self._data_waiter: anyio.Event | None = None
        self._contexts: dict[str, RequestContext] = {}
        # Our requests waiting: id -> (woken by their answer, cancels their write).
        self._waiting: dict[str, tuple[anyio.Event, anyio.CancelScope]] = {}
        self._reader = DetachedTask(self._run, name="ctlwire session reader")
        self._tasks = TaskPool("ctlwire handler")
        self._started = False
        self._ended: SessionClosed | None = None
        self._failure: BaseException | None = None

    # -- life cycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Start reading. The reader lives in a task of its own, so any task may close."""
        if self._started:
            raise RuntimeError("session already started")
        self._started = True
        self._reader.start()

    async def aclose(self) -> None:
        """Cancel handlers (writing nothing for them), fail pending requests, close the
        transport. Idempotent, bounded in time, safe from any task, a handler included."""
        from_handler = self._tasks.in_a_job()
        self._end(SessionClosed("the session was closed"))
        try:
            with anyio.CancelScope(shield=True):
                if self._started and not from_handler:
                    with anyio.move_on_after(self._close_timeout) as scope:
                        await self._reader.wait()
                    if scope.cancelled_caught:
                        logger.warning("a handler ignored cancellation; closing anyway")
        finally:
            with anyio.CancelScope(shield=True):
                await self._transport.aclose()
            self._buffer.close()  # unread messages are dropped with the session
        await anyio.lowlevel.checkpoint_if_cancelled()

    @property
    def closed(self) -> bool:
        """True once the session ended, for whatever reason."""
        return self._ended is not None

    @property
    def failure(self) -> BaseException | None:
        """Why the session ended, if it ended badly (CLI died, line too long...)."""
        return self._failure

    @property
    def transport(self) -> Transport:
        return self._transport

    @property
    def hook_config(self) -> dict[str, list[dict[str, Any]]]:
        """The hook registrations as ``initialize`` sends them."""
        return self._hooks.wire

    # -- what the SDK sends -------------------------------------------------------------

    async def initialize(self, timeout: float | None = 60.0, **fields: Any) -> dict[str, Any]:
        """Send ``initialize`` with the registered hooks (and ``fields``); return the answer."""
        payload = {"subtype": "initialize", "hooks": self._hooks.wire or None, **fields}
        return await self.request(payload, timeout=timeout)

    async def request(
        self, request: Mapping[str, Any], timeout: float | None = 60.0
    ) -> dict[str, Any]:
        """Send our own control request and return the ``response`` payload.

        Raises `ControlError` on an error answer (`MalformedAnswer` on one that breaks
        the protocol), `RequestTimeout` (a `TimeoutError`) after ``timeout`` seconds,
        `SessionClosed` if the session ends first.
        """
        self._check_open()
        entry = self._protocol.start_request(request)
        answered, writing = self._waiting[entry.request_id] = anyio.Event(), anyio.CancelScope()
        try:
            with anyio.move_on_after(timeout) as deadline:
                with writing:
                    await self._write(entry.line)
                await answered.wait()
        finally:
            del self._waiting[entry.request_id]
            self._protocol.forget_request(entry)
        if deadline.cancelled_caught and timeout is not None:
            raise RequestTimeout(entry.request_id, entry.subtype, timeout)
        return entry.result()

    async def send(self, frame: Mapping[str, Any]) -> None:
        """Write one frame (a ``user`` message, say) to the CLI."""
        self._check_open()
        await self._write(encode_frame(frame))

    async def end_input(self) -> None:
        """Close the CLI's stdin; the CLI finishes its turn and exits."""
        await self._transport.end_input()

    async def messages(self) -> AsyncIterator[Frame]:
        """Every non-control frame, in order. Ends when the CLI's output ends; raises
        `SessionClosed` (after the buffered frames) if the session ended in failure."""
        buffer, decoded, decode = self._buffer, self._decoded, self._protocol.decode_messages
        while True:
            if decoded:
                yield decoded.popleft()
            elif buffer:
                try:
                    decoded.extend(decode(buffer.take(DECODE_RUN)))
                except SpillError as exc:
                    self._end(SessionClosed("unread messages were lost", exc), exc)
                    buffer.close()
            elif self._ended is not None:
                if self._failure is not None:
                    raise SessionClosed(self._ended.reason, self._failure)
                return
            else:
                if self._data_waiter is None:
                    self._data_waiter = anyio.Event()
                await self._data_waiter.wait()

    def _check_open(self) -> None:
        if self._ended is not None:
            raise SessionClosed(self._ended.reason, self._failure)

    async def _write(self, line: bytearray) -> None:
        try:
            await self._transport.send(line)
        except InputClosed:
            raise
        except TransportError as exc:
            if self._ended is not None:  # closed under the write: say that, not how
                raise SessionClosed(self._ended.reason, self._failure) from exc
            self._end(SessionClosed("cannot write to the CLI", exc), exc)
            raise

    # -- the reader -----------------------------------------------------------------------

    async def _run(self) -> None:
        ended = SessionClosed("the session was closed")
        failure: BaseException | None = None
        try:
            try:
                await self._read()
            except anyio.EndOfStream:
                ended, failure = await self._why_output_ended()
            except TransportError as exc:
                ended, failure = SessionClosed("the transport failed", exc), exc
            except SpillError as exc:
                ended, failure = SessionClosed("unread messages could not be kept", exc), exc
        except Exception as exc:
            logger.exception("session reader failed")
            ended, failure = SessionClosed("the session reader failed", exc), exc
        finally:
            self._end(ended, failure)
            with anyio.CancelScope(shield=True):
                await self._tasks.wait()

    async def _why_output_ended(self) -> tuple[SessionClosed, BaseException | None]:
        transport = self._transport
        code = await transport.wait_exit(EXIT_AFTER_EOF_TIMEOUT)
        if code == 0:  # a clean end, but a request still waiting learns what the CLI said
            return SessionClosed("the CLI closed its output", transport.exit_error("")), None
        failure = transport.exit_error(
            "the CLI closed its output" if code is None else "the CLI exited"
        )
        return SessionClosed("the session ended", failure), failure

    async def _read(self) -> None:
        receive, handle, react = self._transport.receive_lines, self._protocol.receive, self._react
        buffer = self._buffer
        while True:
            for event in handle(await receive()):
                if isinstance(event, core.Messages):
                    buffer.extend(event.lines)
                    self._wake_consumer()
                else:
                    react(event)

    def _react(self, event: core.Event) -> None:
        """Do what a control event asks: everything the core decides reaches the shell here."""
        if isinstance(event, core.RequestReceived):
            context = self._contexts[event.request_id] = RequestContext(
                event.request_id, event.subtype
            )
            attach_task(context, self._tasks.start(self._serve, event, context))
        elif isinstance(event, core.RequestCancelled):
            cancelled = self._contexts.pop(event.request_id, None)
            if cancelled is not None:
                stop(cancelled)
        elif isinstance(event, core.RequestRejected):
            self._tasks.start(self._write_answer, event.answer)
        elif isinstance(event, core.ResponseReceived):
            self._wake_requester(event.request)

    def _wake_requester(self, entry: OutgoingRequest) -> None:
        waiting = self._waiting.get(entry.request_id)
        if waiting is not None:
            answered, writing = waiting
            answered.set()
            if entry.outcome is Outcome.FAILED:  # e.g. the session ended: stop the write
                writing.cancel()

    def _wake_consumer(self) -> None:
        waiter = self._data_waiter
        if waiter is not None:
            self._data_waiter = None
            waiter.set()

    # -- serving the CLI's requests ------------------------------------------------------

    async def _serve(self, event: core.RequestReceived, context: RequestContext) -> None:
        protocol = self._protocol
        try:
            handler = self._handlers.get(event.subtype)
            try:
                if handler is None:
                    raise LookupError(f"no handler for control request {event.subtype!r}")
                answer = protocol.answer(event.entry, await handler(event.request, context))
            except BaseException as exc:
                up = None if isinstance(exc, Exception) else going_up(exc)
                if up is exc:
                    raise
                if up is not None:
                    raise up from exc
                text = describe(exc)
                logger.warning("%s handler for %s raised %s", event.subtype, event.request_id, text)
                answer = protocol.answer_error(event.entry, text)
            if answer is not None:
                # The handler is done: from now on a cancel stops the write through the
                # transport's guard, never by cancelling this task part-way through a line.
                attach_task(context, None)
                await self._write_answer(answer)
        finally:
            if self._contexts.get(event.request_id) is context:
                del self._contexts[event.request_id]

    async def _write_answer(self, answer: Answer) -> None:
        """Write an answer unless its request was cancelled before its first byte left;
        an answer that cannot be written ends the session with the reason."""
        try:
            await self._transport.send(answer.line, guard=answer.claim)
        except InputClosed as exc:  # we closed stdin on purpose: the CLI knows
            logger.debug("could not answer %s: %s", answer.request_id, exc)
        except TransportError as exc:
            self._end(
                SessionClosed(f"cannot answer the CLI's request {answer.request_id}", exc), exc
            )
        finally:
            self._protocol.answer_done(answer)

    async def _serve_hook(self, request: dict[str, Any], context: RequestContext) -> dict[str, Any]:
        callback_id = request.get("callback_id")
        callback = self._hooks.callbacks.get(callback_id) if isinstance(callback_id, str) else None
        if callback is None:
            raise LookupError(f"no hook callback registered with id {callback_id!r}")
        return await callback(request.get("input") or {}, request.get("tool_use_id"), context)

    # -- the end ----------------------------------------------------------------------

    def _end(self, ended: SessionClosed, failure: BaseException | None = None) -> None:
        """The one way a session ends, from any task (the reader's own included):
        ``failure`` is why, if it ended badly; a second call does nothing."""
        if self._ended is not None:
            return
        self._ended, self._failure = ended, failure
        for event in self._protocol.close(SessionClosed(ended.reason, ended.cause)):
            self._react(event)  # handlers stopped, our requests' callers woken
        self._tasks.cancel_all()
        self._wake_consumer()
        self._reader.cancel()
        if failure is not None:
            logger.debug("session ended: %s", ended)
