"""A scriptable CLI stand-in for tests: ``python peer.py SCENARIO [ARG ...]``.

It speaks the stream-json control protocol on stdin/stdout. Scenarios that check the
SDK's behaviour report what they saw as a ``{"type": "report", ...}`` frame, which the
SDK side receives as an ordinary message.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from typing import Any

INIT_ANSWER = {"commands": [{"name": "compact"}], "peer": "ctlwire-test"}
_out_lock = threading.Lock()
_inbox: queue.Queue[dict[str, Any] | None] = queue.Queue()


def write(obj: Any) -> None:
    raw(json.dumps(obj).encode() + b"\n")


def raw(data: bytes) -> None:
    with _out_lock:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()


def _read_stdin() -> None:
    for line in sys.stdin.buffer:
        if line.strip():
            _inbox.put(json.loads(line))
    _inbox.put(None)


def receive(timeout: float = 10.0) -> dict[str, Any] | None:
    return _inbox.get(timeout=timeout)


def success(request_id: str, response: dict[str, Any]) -> None:
    write(
        {
            "type": "control_response",
            "response": {"subtype": "success", "request_id": request_id, "response": response},
        }
    )


def hook_request(request_id: str, callback_id: str = "hook_0", **extra: Any) -> dict[str, Any]:
    request = {"subtype": "hook_callback", "callback_id": callback_id, "input": {"n": request_id}}
    request.update(extra)
    return {"type": "control_request", "request_id": request_id, "request": request}


def answer_request(frame: dict[str, Any]) -> bool:
    """Answer one of the SDK's own control requests; False for any other frame."""
    if frame["type"] != "control_request":
        return False
    request = frame["request"]
    answer = INIT_ANSWER if request["subtype"] == "initialize" else {"echo": request}
    success(frame["request_id"], answer)
    return True


def serve_until_eof(on_frame: Any = None) -> None:
    """The default CLI: answer our own control requests, echo user turns, exit on EOF."""
    while (frame := receive(timeout=30)) is not None:
        if on_frame is not None and on_frame(frame):
            continue
        if answer_request(frame):
            continue
        if frame["type"] == "user":
            write({"type": "assistant", "message": {"content": frame["message"]["content"]}})
            write({"type": "result", "subtype": "success", "is_error": False})


# -- scenarios ------------------------------------------------------------------------


def echo() -> None:
    serve_until_eof()


def count_answers(counts: dict[str, int], deadline: float, done: Any) -> None:
    """Count control_responses per id until ``done()`` or the deadline (or EOF)."""
    while not done() and time.monotonic() < deadline:
        try:
            frame = receive(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            return
        if frame is None:
            return
        if not answer_request(frame) and frame["type"] == "control_response":
            rid = frame["response"]["request_id"]
            counts[rid] = counts.get(rid, 0) + 1


def hooks(count: str, cancel_every: str = "2", cancel_when: str = "after") -> None:
    """Send COUNT hook callbacks; cancel every Nth, before or after sending it; report."""
    n, every = int(count), int(cancel_every)
    ids = [f"cli-{i}" for i in range(n)]
    cancelled = {rid for i, rid in enumerate(ids) if every and i % every == 0}
    batch = bytearray()
    for rid in ids:
        if rid in cancelled and cancel_when == "before":
            # The cancel and its request arrive in the same read: it must never start.
            batch += json.dumps(hook_request(rid)).encode() + b"\n"
            batch += json.dumps({"type": "control_cancel_request", "request_id": rid}).encode()
            batch += b"\n"
        else:
            batch += json.dumps(hook_request(rid)).encode() + b"\n"
    raw(bytes(batch))
    counts: dict[str, int] = {}
    expected = n - len(cancelled)

    def answered_others() -> bool:
        return sum(c for rid, c in counts.items() if rid not in cancelled) >= expected

    if cancel_when == "after":
        # Once every other request is answered, the SDK has read them all and the handlers
        # of these (which block until cancelled) are running.
        count_answers(counts, time.monotonic() + 20, answered_others)
        raw(
            b"".join(
                json.dumps({"type": "control_cancel_request", "request_id": rid}).encode() + b"\n"
                for rid in sorted(cancelled)
            )
        )
    raw(b'{"type": "control_cancel_request", "request_id": "no-such-id"}\n')
    count_answers(counts, time.monotonic() + 20, answered_others)
    # Give late (wrong) answers to cancelled ids a moment to show up.
    count_answers(counts, time.monotonic() + 0.3, lambda: False)
    write({"type": "report", "counts": counts, "cancelled": sorted(cancelled)})
    serve_until_eof()


def cancel_one(subtype: str) -> None:
    """Send one SUBTYPE request, wait for the SDK to start it, cancel it, report."""
    request: dict[str, Any] = {"subtype": subtype}
    if subtype == "can_use_tool":
        request.update(tool_name="Write", input={"file_path": "x"}, tool_use_id="toolu_1")
    elif subtype == "mcp_message":
        request.update(server_name="demo", message={"jsonrpc": "2.0", "id": 1, "method": "x"})
    elif subtype == "hook_callback":
        request.update(callback_id="hook_0", input={}, tool_use_id="toolu_1")
    write({"type": "control_request", "request_id": "victim", "request": request})
    frame = receive()  # the SDK tells us the handler started by sending a user frame
    assert frame is not None and frame["type"] == "user", frame
    write({"type": "control_cancel_request", "request_id": "victim"})
    write({"type": "control_request", "request_id": "after", "request": {"subtype": "ping"}})
    answered = []
    while (frame := receive()) is not None:
        if frame["type"] == "control_response":
            answered.append(frame["response"]["request_id"])
            if frame["response"]["request_id"] == "after":
                break
    write({"type": "report", "answered": answered})
    serve_until_eof()


def die_on_request(code: str = "3") -> None:
    """Answer initialize, then on the next control request print to stderr and exit."""

    def on_frame(frame: dict[str, Any]) -> bool:
        if frame["type"] == "control_request" and frame["request"]["subtype"] != "initialize":
            sys.stderr.write("fatal: the model exploded\n")
            sys.stderr.flush()
            os._exit(int(code))
        return False

    serve_until_eof(on_frame)


def flood_then_hook(count: str) -> None:
    """Send COUNT messages then a hook_callback; report whether it was answered."""
    frame = {"type": "assistant", "message": {"content": "x" * 200}}
    raw(b"".join(json.dumps(dict(frame, n=i)).encode() + b"\n" for i in range(int(count))))
    write(hook_request("after-flood"))
    answer = receive(timeout=10)
    write({"type": "report", "answer": answer})
    serve_until_eof()


def interleave(count: str) -> None:
    """COUNT messages with a hook_callback after every 100, each waited for like the real
    CLI does; report the order of the answers and the slowest round trip."""
    order, slowest = [], 0.0
    for block in range(int(count) // 100):
        raw(
            b"".join(
                json.dumps({"type": "assistant", "n": block * 100 + i}).encode() + b"\n"
                for i in range(100)
            )
        )
        sent = time.monotonic()
        write(hook_request(f"h{block}"))
        frame = receive()
        assert frame is not None
        slowest = max(slowest, time.monotonic() - sent)
        order.append(frame["response"]["request_id"])
    write({"type": "report", "order": order, "slowest": slowest})
    serve_until_eof()


def crash_midline(code: str = "3") -> None:
    write({"type": "assistant", "n": 1})
    raw(b'{"type": "assistant", "n": 2, "trunc')
    sys.stderr.write("panic: lost the plot\n")
    sys.stderr.flush()
    os._exit(int(code))


def noise() -> None:
    raw(b"[SandboxDebug] starting\n")
    write({"type": "assistant", "n": 1})
    raw(b"\xff\xfe not utf-8\n")
    raw(b'{"type": "assistant", garbled\n')
    write({"type": "assistant", "n": 2})
    raw(b"   \n\n")
    write({"type": "result", "n": 3})
    serve_until_eof()


def overlong(size: str) -> None:
    write({"type": "assistant", "n": 1})
    raw(b'{"type": "assistant", "pad": "' + b"x" * int(size) + b'"}\n')
    serve_until_eof()


def big_line(size: str) -> None:
    """One frame whose line is SIZE bytes, then the default behaviour."""
    pad = int(size) - len(b'{"type":"assistant","pad":""}')
    raw(b'{"type":"assistant","pad":"' + b"x" * pad + b'"}\n')
    serve_until_eof()


def close_stdout() -> None:
    """Answer initialize, then close stdout but keep running until stdin EOF."""
    frame = receive()
    assert frame is not None
    success(frame["request_id"], INIT_ANSWER)
    os.close(1)
    while receive(timeout=60) is not None:
        pass


def grandchild() -> None:
    """Leave a grandchild holding stdout and stderr, then exit."""
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    write({"type": "assistant", "n": 1})
    os._exit(0)


def no_read() -> None:
    """Never read stdin (so writes to us block); exit on SIGTERM."""
    write({"type": "assistant", "n": 1})
    time.sleep(60)


def ignore_term() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    write({"type": "assistant", "n": 1})
    time.sleep(60)


def malformed() -> None:
    write({"type": "control_request", "request": {"subtype": "can_use_tool"}})
    write({"type": "control_request", "request_id": "no-subtype", "request": {}})
    write({"type": "control_response", "response": {"subtype": "success"}})
    write({"type": "control_cancel_request"})
    write({"type": "brand_new_kind", "n": 1})
    write({"type": "control_request", "request_id": "ok", "request": {"subtype": "ping"}})
    answered = []
    while len(answered) < 2 and (frame := receive()) is not None:
        if frame["type"] == "control_response":
            answered.append(frame["response"])
    write({"type": "report", "answered": answered})
    serve_until_eof()


def duplicate_ids() -> None:
    raw(
        json.dumps(hook_request("dup")).encode()
        + b"\n"
        + json.dumps(hook_request("dup")).encode()
        + b"\n"
    )
    counts = 0
    end = time.monotonic() + 1.0
    while time.monotonic() < end:
        try:
            frame = receive(timeout=max(0.0, end - time.monotonic()))
        except queue.Empty:
            break
        if frame is not None and frame["type"] == "control_response":
            counts += 1
    write({"type": "report", "answers": counts})
    serve_until_eof()


def stderr_flood(lines: str) -> None:
    for i in range(int(lines)):
        sys.stderr.write(f"noise line {i} " + "y" * 100 + "\n")
    sys.stderr.flush()
    write({"type": "assistant", "n": 1})
    serve_until_eof()


def env_dump(*_args: str) -> None:
    write({"type": "report", "env": dict(os.environ), "argv": sys.argv[2:], "cwd": os.getcwd()})
    serve_until_eof()


def main() -> None:
    scenario = globals()[sys.argv[1]]
    if scenario is not no_read:
        threading.Thread(target=_read_stdin, daemon=True).start()
    scenario(*sys.argv[2:])
    sys.stdout.flush()


if __name__ == "__main__":
    main()
