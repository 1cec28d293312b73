"""The dispatcher: one reader routes frames, handlers run concurrently, close from any task."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

import anyio
import anyio.lowlevel

from ctlwire.transport import (
    AsyncResource,
    DetachedTask,
    ProcessExited,
    TaskPool,
    Transport,
    TransportError,
)

from .context import RequestContext
from .errors import MalformedFrame, SessionClosed
from .hooks import HookMatcher, HookRegistry
from .pending import IncomingRequests, OutgoingRequests
from .wire import (
    CONTROL_REQUEST,
    CONTROL_TYPES,
    KEEP_ALIVE,
    ControlCancel,
    ControlRequest,
    ControlResponse,
    Frame,
    decode_lines,
    encode_frame,
    error_frame,
    may_hold_control,
    parse_control,
    request_frame,
    success_frame,
)

logger = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any], RequestContext], Awaitable[dict[str, Any]]]

_HANDLER_TASK = "ctlwire handler"
# messages() decodes queued raw lines this many at a time.
DECODE_RUN = 64
# How long the CLI may take to exit after closing its stdout before we call it a failure.
EXIT_AFTER_EOF_TIMEOUT = 1.0


class ControlSession(AsyncResource):
    """Speaks the control protocol over a transport.

    ``handlers`` maps a CLI request subtype to ``async (request, ctx) -> dict``;
    ``hooks`` registers hook callbacks, served as ``hook_callback`` requests. Messages
    (every non-control frame) are buffered for `messages` up to
    ``max_buffered_messages``; past that the reader pauses, unless one of our own
    requests is waiting for its answer (None: never pause).
    """

    def __init__(
        self,
        transport: Transport,
        handlers: Mapping[str, Handler] | None = None,
        hooks: Mapping[str, Sequence[HookMatcher]] | None = None,
        *,
        max_buffered_messages: int | None = 10_000,
        close_timeout: float = 5.0,
    ) -> None:
        self._transport = transport
        self._hooks = HookRegistry(hooks)
        self._handlers: dict[str, Handler] = {"hook_callback": self._serve_hook}
        self._handlers.update(handlers or {})
        self._high_water = max_buffered_messages
        self._close_timeout = close_timeout
        self._outgoing = OutgoingRequests()
        self._incoming: IncomingRequests[RequestContext] = IncomingRequests()
        # Messages in order: decoded frames, or raw lines not decoded yet; messages()
        # decodes raw lines a run at a time and hands the run out before the buffer.
        self._buffer: deque[Frame | bytes] = deque()
        self._decoded: deque[Frame] = deque()
        self._data_ready = anyio.Event()
        self._room = anyio.Event()
        self._reader_paused = False
        self._supervisor = DetachedTask(self._run, name="ctlwire session")
        self._tasks = TaskPool(_HANDLER_TASK)
        self._started = False
        self._closing = False
        self._ended: SessionClosed | None = None
        self._failure: BaseException | None = None

    # -- life cycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Start reading. The reader lives in a task of its own, so any task may close."""
        if self._started:
            raise RuntimeError("session already started")
        self._started = True
        self._supervisor.start()

    async def aclose(self) -> None:
        """Cancel handlers (writing nothing for them), fail pending requests, close the
        transport. Idempotent, bounded in time, safe from any task."""
        if not self._closing:
            self._closing = True
            self._incoming.cancel_all()
            self._supervisor.cancel()
        try:
            with anyio.CancelScope(shield=True):
                if self._started:
                    with anyio.move_on_after(self._close_timeout) as scope:
                        await self._supervisor.wait()
                    if scope.cancelled_caught:
                        logger.warning("a handler ignored cancellation; closing anyway")
                        self._end(SessionClosed("the session was closed"), None)
        finally:
            with anyio.CancelScope(shield=True):
                await self._transport.aclose()
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

        Raises `ControlError` on an error answer, `TimeoutError` after ``timeout``
        seconds, `SessionClosed` if the session ends first.
        """
        subtype = request.get("subtype")
        if not isinstance(subtype, str):
            raise ValueError("a control request needs a string 'subtype'")
        self._check_open()
        request_id = self._outgoing.new_id()
        answered = anyio.Event()
        entry = self._outgoing.open(request_id, subtype, answered.set)
        try:
            self._resume_reader()  # an answer must never wait behind unread messages
            with anyio.fail_after(timeout):
                await self._write(request_frame(request_id, request))
                await answered.wait()
        finally:
            self._outgoing.forget(request_id)
        return entry.result()

    async def send(self, frame: Mapping[str, Any]) -> None:
        """Write one frame (a ``user`` message, say) to the CLI."""
        self._check_open()
        await self._write(frame)

    async def end_input(self) -> None:
        """Close the CLI's stdin; the CLI finishes its turn and exits."""
        await self._transport.end_input()

    async def messages(self) -> AsyncIterator[Frame]:
        """Every non-control frame, in order. Ends when the CLI's output ends; raises
        `SessionClosed` (after the buffered frames) if the session ended in failure."""
        buffer, decoded = self._buffer, self._decoded
        while True:
            if decoded:
                # The run lives on the session: a consumer that stops part-way through it
                # leaves the rest, in order, to the next one.
                frame = decoded.popleft()
                if frame.get("type") != KEEP_ALIVE:  # (it skipped the reader's routing)
                    yield frame
            elif buffer:
                item = buffer.popleft()
                if isinstance(item, bytes):  # raw lines: decode a short run of them now
                    raw = [item]
                    while buffer and len(raw) < DECODE_RUN:
                        following = buffer[0]
                        if not isinstance(following, bytes):
                            break
                        raw.append(following)
                        buffer.popleft()
                    decoded.extend(decode_lines(raw))
                if self._reader_paused and len(buffer) <= self._low_water():
                    self._resume_reader()
                if not isinstance(item, bytes):
                    yield item
            elif self._ended is not None:
                if self._failure is not None:
                    raise SessionClosed(self._ended.reason, self._failure)
                return
            else:
                await self._data_ready.wait()

    def _check_open(self) -> None:
        if self._ended is not None:
            raise SessionClosed(self._ended.reason, self._failure)
        if self._closing:
            raise SessionClosed("the session is closing")

    async def _write(self, frame: Mapping[str, Any]) -> None:
        await self._transport.send(encode_frame(frame))

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
        except Exception as exc:
            logger.exception("session reader failed")
            ended, failure = SessionClosed("the session reader failed", exc), exc
        finally:
            # The CLI is gone or we are closing: nobody wants the answers.
            self._incoming.cancel_all()
            self._tasks.cancel_all()
            with anyio.CancelScope(shield=True):
                await self._tasks.wait()
            self._end(ended, failure)

    async def _why_output_ended(self) -> tuple[SessionClosed, BaseException | None]:
        transport = self._transport
        code = await transport.wait_exit(EXIT_AFTER_EOF_TIMEOUT)
        if code == 0:
            return SessionClosed("the CLI closed its output (exit code 0)"), None
        detail = "the CLI closed its output" if code is None else "the CLI exited"
        failure = ProcessExited(code, transport.stderr_tail, detail)
        return SessionClosed("the session ended", failure), failure

    async def _read(self) -> None:
        receive = self._transport.receive_lines
        buffer = self._buffer
        while True:
            lines = await receive()
            before = len(buffer)
            if may_hold_control(lines):
                for frame in decode_lines(lines):
                    kind = frame.get("type")
                    if kind in CONTROL_TYPES:
                        self._route_control(kind, frame)
                    else:
                        buffer.append(frame)
            else:
                # Only messages: queue the raw lines; messages() decodes them just before
                # handing them out, so frames never pile up decoded (and GC-tracked).
                buffer.extend(lines)
            if len(buffer) != before:
                self._wake_consumers()
            if (
                self._high_water is not None
                and len(buffer) >= self._high_water
                and not self._outgoing
            ):
                self._reader_paused = True
                self._room = anyio.Event()
                await self._room.wait()

    def _wake_consumers(self) -> None:
        event, self._data_ready = self._data_ready, anyio.Event()
        event.set()

    def _low_water(self) -> int:
        return (self._high_water or 0) // 2

    def _resume_reader(self) -> None:
        if self._reader_paused:
            self._reader_paused = False
            self._room.set()

    def _route_control(self, kind: str, frame: Frame) -> None:
        try:
            control = parse_control(kind, frame)
        except MalformedFrame as exc:
            logger.warning("malformed control frame: %s", exc)
            if kind == CONTROL_REQUEST and exc.request_id is not None:
                self._tasks.start(self._answer_error, exc.request_id, str(exc))
            return
        if type(control) is ControlResponse:
            self._outgoing.resolve(control.response)
        elif type(control) is ControlRequest:
            context = RequestContext(control.request_id, control.subtype)
            if self._incoming.begin(control.request_id, context):
                context._stop_task = self._tasks.start(self._serve, control.request, context)
            else:
                logger.warning(
                    "duplicate control_request id %s ignored while the first is in flight",
                    control.request_id,
                )
        elif type(control) is ControlCancel:
            self._incoming.cancel(control.request_id)

    # -- serving the CLI's requests ------------------------------------------------------

    async def _serve(self, request: dict[str, Any], context: RequestContext) -> None:
        if context.cancelled:  # cancelled before it could start
            return
        handler = self._handlers.get(context.subtype)
        try:
            if handler is None:
                raise LookupError(f"no handler for control request {context.subtype!r}")
            result = await handler(request, context)
            if result is None:
                result = {}
            line = encode_frame(success_frame(context.request_id, result))
        except Exception as exc:
            logger.warning("%s handler for %s raised %r", context.subtype, context.request_id, exc)
            line = encode_frame(error_frame(context.request_id, str(exc) or repr(exc)))
        # Between here and the write there is no checkpoint, so a cancel read by the reader
        # either came first (finish() refuses) or comes after the answer was decided.
        if not self._incoming.finish(context.request_id, context):
            return
        await self._send_answer(context.request_id, line)

    async def _answer_error(self, request_id: str, message: str) -> None:
        await self._send_answer(request_id, encode_frame(error_frame(request_id, message)))

    async def _send_answer(self, request_id: str, line: bytearray) -> None:
        """Write an answer; a CLI that is gone cannot take it, which is no one's error."""
        try:
            await self._transport.send(line)
        except TransportError as exc:
            logger.debug("could not answer %s: %s", request_id, exc)

    async def _serve_hook(self, request: dict[str, Any], context: RequestContext) -> dict[str, Any]:
        callback_id = request.get("callback_id")
        callback = self._hooks.callbacks.get(callback_id) if isinstance(callback_id, str) else None
        if callback is None:
            raise LookupError(f"no hook callback registered with id {callback_id!r}")
        return await callback(request.get("input") or {}, request.get("tool_use_id"), context)

    # -- the end ----------------------------------------------------------------------

    def _end(self, ended: SessionClosed, failure: BaseException | None) -> None:
        if self._ended is not None:
            return
        self._ended, self._failure = ended, failure
        self._incoming.cancel_all()
        self._outgoing.fail_all(lambda: SessionClosed(ended.reason, failure))
        self._resume_reader()
        self._wake_consumers()
        if failure is not None:
            logger.debug("session ended: %s", ended)
