"""A conformance driver around a small SDK written for the tests, with bugs on demand.

``python conform_naive_driver.py [BUG ...]``. With no bug the little SDK keeps every rule
the catalog checks; each bug breaks one the way real SDKs do, so the tests can show that
every scenario fails an SDK with the bug it is about.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sys
import time
from collections import deque
from typing import Any

BUGS = set(sys.argv[1:])
FLAGS = ["--output-format", "stream-json", "--input-format", "stream-json", "--verbose"]
KNOWN_TYPES = {"assistant", "user", "system", "result", "stream_event"}
END = object()


def emit(event: str, **fields: Any) -> None:
    if "garbage" in BUGS and event == "hello":
        sys.stdout.write("this is not JSON\n")
    sys.stdout.write(json.dumps({"event": event, "t": time.time(), **fields}) + "\n")
    sys.stdout.flush()


def no_surrogates(value: Any) -> Any:
    if isinstance(value, str):
        return "".join(c for c in value if not 0xD800 <= ord(c) <= 0xDFFF)
    if isinstance(value, dict):
        return {k: no_surrogates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [no_surrogates(v) for v in value]
    return value


class NaiveSession:
    """Reader task, one task per CLI request, a lock that keeps answers whole and in turn."""

    def __init__(self, proc: asyncio.subprocess.Process, want: dict[str, Any]) -> None:
        self.proc, self.want = proc, want
        self.messages: asyncio.Queue[Any] = asyncio.Queue(100 if "bounded-queue" in BUGS else 0)
        self.lock = asyncio.Lock()
        self.ids = itertools.count(1)
        self.pending: dict[str, asyncio.Future[Any]] = {}
        self.handlers: dict[str, tuple[asyncio.Task[None], asyncio.Event]] = {}
        self.cancelled: set[str] = set()
        self.initialized = asyncio.Event()
        self.held: list[dict[str, Any]] = []
        self.stderr: deque[str] = deque(maxlen=5)
        self.hooked = asyncio.Event()
        self.tasks: set[asyncio.Task[Any]] = set()

    async def write(self, frame: dict[str, Any], rid: str | None = None) -> None:
        async with self.lock:
            if rid is not None and rid in self.cancelled and "answer-after-cancel" not in BUGS:
                return
            assert self.proc.stdin is not None
            self.proc.stdin.write(json.dumps(frame).encode() + b"\n")
            try:
                await self.proc.stdin.drain()
            except (BrokenPipeError, ConnectionResetError) as exc:
                if "ignore-write-errors" not in BUGS:
                    await self.messages.put(RuntimeError(f"cannot answer the CLI: {exc}"))

    async def request(self, subtype: str, **fields: Any) -> Any:
        rid = f"req_{next(self.ids)}"
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.pending[rid] = future
        await self.write({"type": "control_request", "request_id": rid,
                          "request": {"subtype": subtype, **fields}})  # fmt: skip
        return await future

    def start(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)

    async def read(self) -> None:
        try:
            await self._read()
        except Exception as exc:
            await self.messages.put(exc)

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while raw := await self.proc.stdout.readline():
            if "raw-types" in BUGS and b"\\u" in raw:
                continue  # "not a frame": it spells its type with escapes
            try:
                frame = json.loads(raw)
            except ValueError:
                if "fragile" in BUGS:
                    raise
                continue
            kind = frame.get("type") if isinstance(frame, dict) else None
            if not isinstance(kind, str) and "fragile" not in BUGS:
                continue
            if "drop-surrogates" in BUGS:
                frame = no_surrogates(frame)
            await self.route(kind, frame)
        code = await self.proc.wait()
        why = f"the CLI exited with {code}; stderr: {' | '.join(self.stderr)}"
        if "forget-pending" not in BUGS:
            for future in self.pending.values():
                if not future.done():
                    future.set_exception(RuntimeError(why))
        await self.messages.put(END if code == 0 else RuntimeError(why))

    async def route(self, kind: Any, frame: Any) -> None:
        if kind == "control_request":
            rid, request = frame.get("request_id"), frame.get("request")
            if "fragile" not in BUGS and (
                not isinstance(rid, str) or not isinstance(request, dict)
            ):
                return
            if rid in self.handlers and "twice" not in BUGS:
                return
            if not self.initialized.is_set() and "init-first" in BUGS:
                self.held.append(frame)
                return
            abort = asyncio.Event()
            task = asyncio.ensure_future(self.serve(rid, request, abort))
            self.handlers[rid] = (task, abort)
            if "serial" in BUGS:
                await task
        elif kind == "control_cancel_request":
            rid = frame.get("request_id")
            if "error-on-cancel" in BUGS:
                await self.write({"type": "control_response", "response": {
                    "subtype": "error", "request_id": rid, "error": "cancelled"}})  # fmt: skip
            if rid in self.handlers:
                self.cancelled.add(rid)
                task, abort = self.handlers.pop(rid)
                abort.set()
                if "answer-after-cancel" not in BUGS:
                    task.cancel()
        elif kind == "control_response":
            body = frame.get("response")
            if not isinstance(body, dict):
                return
            future = self.pending.pop(body.get("request_id"), None)
            if future is None or future.done():
                return
            payload = body.get("response")
            if body.get("subtype") == "error" and "trusting" not in BUGS:
                future.set_exception(RuntimeError(body.get("error")))
            elif not isinstance(payload, dict) and "trusting" not in BUGS:
                future.set_exception(RuntimeError(f"malformed answer: {payload!r}"))
            else:
                future.set_result(payload)
        elif kind == "keep_alive" and "keep-alive-as-message" not in BUGS:
            return
        elif kind in KNOWN_TYPES or "drop-unknown-types" not in BUGS:
            await self.messages.put(frame)

    async def serve(self, rid: str, request: dict[str, Any], abort: asyncio.Event) -> None:
        subtype = request.get("subtype")
        try:
            if subtype == "hook_callback":
                answer = await self.hook(request.get("input") or {}, abort)
            elif subtype == "can_use_tool":
                answer = {"behavior": "allow", "updatedInput": request.get("input") or {}}
            elif "silent-on-unknown" in BUGS:
                return
            else:
                raise LookupError(f"no handler for {subtype}")
            frame = {"subtype": "success", "request_id": rid, "response": answer}
        except Exception as exc:
            if "raise-kills" in BUGS:
                return
            frame = {"subtype": "error", "request_id": rid, "error": str(exc)}
        await self.write({"type": "control_response", "response": frame}, rid)
        self.handlers.pop(rid, None)

    async def hook(self, inp: dict[str, Any], abort: asyncio.Event) -> dict[str, Any]:
        emit("hook", input=inp)
        self.hooked.set()
        if self.want.get("interrupt_on_hook"):
            self.start(self.ask("interrupt"))
        tool_input = inp.get("tool_input") or {}
        mode = tool_input.get("conform")
        if mode == "wait":
            await abort.wait()
            raise RuntimeError("aborted")
        if mode == "delay":
            await asyncio.sleep(float(tool_input.get("seconds", 0)))
        if mode == "raise":
            raise RuntimeError(tool_input.get("text", "failed"))
        return {"continue": True, "systemMessage": tool_input.get("text", "ok")}

    async def ask(self, subtype: str) -> None:
        fields = {"mode": "default"} if subtype == "set_permission_mode" else {}
        try:
            await self.request(subtype, **fields)
        except Exception as exc:
            emit("reply", request=subtype, ok=False, error=str(exc))
        else:
            emit("reply", request=subtype, ok=True)


async def drive(want: dict[str, Any]) -> None:
    limit = (1 << 20) if "small-lines" in BUGS else (64 << 20)
    proc = await asyncio.create_subprocess_exec(
        os.environ["CTLWIRE_CONFORM_CLI"], *FLAGS, limit=limit,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    session = NaiveSession(proc, want)

    async def keep_stderr() -> None:
        assert proc.stderr is not None
        while line := await proc.stderr.readline():
            session.stderr.append(line.decode(errors="replace").strip())

    session.start(keep_stderr())
    reader = asyncio.ensure_future(session.read())
    hooks = {"matcher": None, "hookCallbackIds": ["hook_0"], "timeout": want.get("hook_timeout")}
    await session.request("initialize", hooks={"PreToolUse": [hooks]})
    session.initialized.set()
    for frame in session.held:
        await session.route("control_request", frame)
    await session.write({"type": "user", "message": {"role": "user", "content": "conform"},
                         "parent_tool_use_id": None, "session_id": "default"})  # fmt: skip
    if want.get("request"):
        session.start(session.ask(want["request"]))
    if want.get("read_after_hook"):
        await session.hooked.wait()
    while (item := await session.messages.get()) is not END:
        if isinstance(item, Exception):
            raise item
        content = (
            (item.get("message") or {}).get("content") if item.get("type") == "assistant" else None
        )
        text = "".join(b.get("text", "") for b in content) if isinstance(content, list) else None
        emit("message", type=item.get("type"), text=text)
        if item.get("type") == "result":
            break
    assert proc.stdin is not None
    proc.stdin.close()
    await proc.wait()
    await asyncio.gather(*session.tasks, return_exceptions=True)
    reader.cancel()
    emit("done")


def main() -> int:
    if "nothing" in BUGS:
        return 0
    if "crash" in BUGS:
        print("naive driver: crashing on purpose", file=sys.stderr)
        return 3
    if "hang" in BUGS:
        time.sleep(3600)
    emit("hello", sdk="naive", version="0")
    try:
        asyncio.run(drive(json.loads(os.environ["CTLWIRE_CONFORM_NEEDS"])))
    except Exception as exc:
        emit("error", text=f"{type(exc).__name__}: {exc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
