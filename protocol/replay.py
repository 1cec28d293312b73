"""Replay: run ctlwire's own transport and session against a fake CLI playing a log.

The SDK side is derived from the log: each ``sdk`` record is sent once every earlier
``cli`` record the SDK can observe has arrived (messages in order, answers to our own
requests, the CLI's requests reaching their handler); each CLI request is answered with
the recorded answer, and one the log shows cancelled is left to be cancelled.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio

from ctlwire.transport import ProcessExited, SubprocessTransport

from .context import RequestContext
from .errors import ControlError, SessionClosed
from .hooks import HookMatcher
from .log import Record, SessionLog
from .session import ControlSession


class ReplayFailure(Exception):
    """The replay did not reproduce the log; the text points at the record."""


@dataclass
class ReplayResult:
    path: str
    ok: bool
    frames: int
    requests: int
    cancels: int
    seconds: float
    error: str = ""

    def summary(self) -> str:
        verdict = "PASS" if self.ok else "FAIL"
        line = (
            f"{verdict} {self.path}  frames={self.frames} requests={self.requests} "
            f"cancels={self.cancels} time={self.seconds:.2f}s"
        )
        if self.error:
            line += "\n" + "\n".join(f"    {part}" for part in self.error.splitlines())
        return line


@dataclass
class _Plan:
    """What the log says the SDK side must do and will see."""

    log: SessionLog
    answers: dict[str, Record] = field(default_factory=dict)  # CLI id -> our answer
    cancelled: set[str] = field(default_factory=set)  # CLI ids cancelled before answered
    request_index: dict[str, int] = field(default_factory=dict)  # CLI id -> record index
    response_index: dict[str, int] = field(default_factory=dict)  # SDK id -> record index
    messages: list[int] = field(default_factory=list)  # record indexes of messages
    initialize: dict[str, Any] = field(default_factory=dict)  # our initialize request
    cli_subtypes: set[str] = field(default_factory=set)  # subtypes the CLI asks for
    exit_code: int | None = None

    def __post_init__(self) -> None:
        for index, record in enumerate(self.log.records):
            frame = record.frame or {}
            kind = frame.get("type")
            if record.exit is not None:
                self.exit_code = record.exit
            if not frame:
                continue
            if record.src == "cli":
                if kind == "control_request":
                    self.request_index[frame["request_id"]] = index
                    self.cli_subtypes.add(str(frame["request"].get("subtype")))
                elif kind == "control_response":
                    self.response_index.setdefault(frame["response"]["request_id"], index)
                elif kind == "control_cancel_request":
                    if frame["request_id"] not in self.answers:
                        self.cancelled.add(frame["request_id"])
                elif kind != "keep_alive":
                    self.messages.append(index)
            elif kind == "control_response":
                rid = frame["response"]["request_id"]
                if rid not in self.cancelled:
                    self.answers.setdefault(rid, record)
            elif (
                kind == "control_request"
                and not self.initialize
                and frame["request"].get("subtype") == "initialize"
            ):
                self.initialize = frame["request"]

    def inconsistencies(self) -> list[str]:
        """What no real session can produce, found in the log alone: a CLI request left
        unanswered and uncancelled while the CLI finished its turn (a ``result``) before
        the SDK closed stdin. (After stdin EOF the CLI may leave requests hanging.)"""
        found = []
        records = self.log.records
        for rid, index in self.request_index.items():
            if rid in self.answers or rid in self.cancelled:
                continue
            for later in records[index + 1 :]:
                if later.eof:
                    break
                if later.src == "cli" and later.frame and later.frame.get("type") == "result":
                    found.append(
                        f"{self.log.path}:{self.log.line_of(index)}: request {rid} was neither "
                        "answered nor cancelled, yet the CLI finished its turn"
                    )
                    break
        return found

    def observable(self, index: int) -> bool:
        """Whether the SDK side can see record ``index`` arrive (and so wait for it)."""
        record = self.log.records[index]
        if record.src != "cli" or record.frame is None:
            return False
        kind = record.frame.get("type")
        if kind == "control_request":
            return record.frame["request_id"] not in self.cancelled
        return kind not in ("control_cancel_request", "keep_alive")


class _Replayer:
    def __init__(self, log: SessionLog) -> None:
        self.log = log
        self.plan = _Plan(log)
        self.seen = [anyio.Event() for _ in log.records]
        self.waited = 0  # every observable record before this index has been seen
        self.failures: list[str] = []
        self.end_error: BaseException | None = None
        self.ended = False

    def where(self, index: int) -> str:
        return f"{self.log.path}:{self.log.line_of(index)}"

    def fail(self, text: str) -> None:
        self.failures.append(text)

    async def answer(self, request: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        return await self._answer_from_log(ctx, lambda recorded: recorded == request)

    async def hook(self, inp: dict[str, Any], tool_use_id: str | None, ctx: RequestContext) -> Any:
        return await self._answer_from_log(
            ctx,
            lambda recorded: (
                (recorded.get("input") or {}) == inp and recorded.get("tool_use_id") == tool_use_id
            ),
        )

    async def _answer_from_log(
        self, ctx: RequestContext, arrived_as_recorded: Callable[[dict[str, Any]], bool]
    ) -> dict[str, Any]:
        """Answer the CLI's request as the log did; check it arrived as recorded."""
        index = self.plan.request_index.get(ctx.request_id)
        if index is None:
            self.fail(f"the CLI sent request {ctx.request_id}, which is not in the log")
            raise LookupError(f"unexpected request {ctx.request_id}")
        self.seen[index].set()
        recorded = self.log.records[index].frame or {}
        if not arrived_as_recorded(recorded.get("request") or {}):
            self.fail(f"{self.where(index)}: the CLI's request arrived changed")
        answer = self.plan.answers.get(ctx.request_id)
        if answer is None:  # cancelled (or never answered) in the log: wait to be cancelled
            await anyio.sleep_forever()
        assert answer is not None and answer.frame is not None
        body = answer.frame["response"]
        if body.get("subtype") == "error":
            raise _RecordedError(body.get("error", ""))
        result: dict[str, Any] = body.get("response") or {}
        return result

    def hooks(self, init: dict[str, Any]) -> dict[str, list[HookMatcher]]:
        config = init.get("hooks") or {}
        return {
            event: [
                HookMatcher(
                    entry.get("matcher"),
                    [self.hook] * len(entry.get("hookCallbackIds", [])),
                    entry.get("timeout"),
                )
                for entry in entries
            ]
            for event, entries in config.items()
        }

    async def consume(self, session: ControlSession) -> None:
        expected = iter(self.plan.messages)
        try:
            async for message in session.messages():
                index = next(expected, None)
                if index is None:
                    self.fail(f"an extra message arrived: {message.get('type')}")
                    continue
                if message != self.log.records[index].frame:
                    self.fail(f"{self.where(index)}: the message arrived changed or out of order")
                self.seen[index].set()
        except SessionClosed as exc:
            self.end_error = exc
        finally:
            # The CLI's output is over: nothing more can arrive, so stop waiting for it.
            self.ended = True
            for event in self.seen:
                event.set()
        missing = next(expected, None)
        if missing is not None:
            self.fail(f"{self.where(missing)}: this message never arrived")

    async def our_request(self, session: ControlSession, index: int) -> None:
        frame = self.log.records[index].frame or {}
        request, recorded_id = frame["request"], frame["request_id"]
        response_at = self.plan.response_index.get(recorded_id)
        try:
            if request.get("subtype") == "initialize" and _same_hooks(session, request):
                fields = {k: v for k, v in request.items() if k not in ("subtype", "hooks")}
                result: Any = await session.initialize(timeout=None, **fields)
            else:
                result = await session.request(request, timeout=None)
        except ControlError as exc:
            result = exc
        except SessionClosed:
            if response_at is not None:
                self.fail(f"{self.where(index)}: no answer came before the session ended")
            return
        if response_at is None:
            self.fail(f"{self.where(index)}: answered, but the log has no answer")
            return
        body = (self.log.records[response_at].frame or {})["response"]
        want = body.get("response") if body.get("subtype") == "success" else body.get("error")
        got = result.message if isinstance(result, ControlError) else result
        if want != got and not (want is None and got == {}):
            self.fail(f"{self.where(response_at)}: the answer arrived changed")
        self.seen[response_at].set()

    async def wait_for_observable_before(self, index: int) -> None:
        for earlier in range(self.waited, index):
            if self.plan.observable(earlier):
                await self.seen[earlier].wait()
        self.waited = max(self.waited, index)

    async def drive(self, session: ControlSession, tg: anyio.abc.TaskGroup) -> None:
        for index, record in enumerate(self.log.records):
            if record.src != "sdk":
                continue
            await self.wait_for_observable_before(index)
            if self.ended:
                return
            frame = record.frame
            if record.eof:
                await session.end_input()
            elif frame is None:
                self.fail(f"{self.where(index)}: cannot replay an sdk {record.kind} record")
            elif frame.get("type") == "control_request":
                tg.start_soon(self.our_request, session, index)
                await anyio.lowlevel.checkpoint()  # keep our requests in recorded order
            elif frame.get("type") != "control_response":  # answers come from handlers
                await session.send(frame)
        await self.wait_for_observable_before(len(self.log.records))


class _RecordedError(Exception):
    """Raised by a handler to answer with the recorded error text."""


def _same_hooks(session: ControlSession, request: dict[str, Any]) -> bool:
    return (request.get("hooks") or None) == (session.hook_config or None)


async def replay_log(log: SessionLog, argv: Sequence[str], timeout: float = 30.0) -> ReplayResult:
    """Replay one log against the fake CLI started with ``argv``."""
    started = time.monotonic()
    replayer = _Replayer(log)
    replayer.failures += replayer.plan.inconsistencies()
    plan = replayer.plan
    handlers = {s: replayer.answer for s in plan.cli_subtypes if s != "hook_callback"}
    transport = SubprocessTransport(list(argv), close_timeout=5.0)
    try:
        with anyio.fail_after(timeout):
            async with (
                transport,
                ControlSession(
                    transport, handlers=handlers, hooks=replayer.hooks(plan.initialize)
                ) as session,
                anyio.create_task_group() as tg,
            ):
                tg.start_soon(replayer.consume, session)
                await replayer.drive(session, tg)
                code = await transport.wait_exit(timeout)
                _check_end(replayer, transport.stderr_tail, code)
    except TimeoutError:
        replayer.fail(f"timed out after {timeout:g}s")
    except Exception as exc:  # a broken log or a crash in the replay itself
        replayer.fail(f"{type(exc).__name__}: {exc}")
    records = log.records
    frames = [r.frame for r in records if r.frame is not None]
    return ReplayResult(
        path=log.path,
        ok=not replayer.failures,
        frames=len(frames),
        requests=sum(f.get("type") == "control_request" for f in frames),
        cancels=sum(f.get("type") == "control_cancel_request" for f in frames),
        seconds=time.monotonic() - started,
        error="\n".join(replayer.failures),
    )


def _check_end(replayer: _Replayer, stderr_tail: Sequence[str], code: int | None) -> None:
    want = replayer.plan.exit_code
    if want is not None and code != want:
        replayer.fail(f"the fake CLI exited with {code}, the log says {want}")
    error = replayer.end_error
    cause = error.cause if isinstance(error, SessionClosed) else None
    if error is not None and not (isinstance(cause, ProcessExited) and cause.returncode == want):
        replayer.fail(f"the session ended with an error: {error}")
