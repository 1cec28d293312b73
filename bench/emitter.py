"""The CLI stand-in for benchmarks. Mode and size come from the environment
(``BENCH_MODE``, ``BENCH_N``), since the reference SDK only takes a CLI path.

- flood: answer initialize; on the user message write N assistant frames (~300 bytes),
  prepared in advance, then a result. sdkflood: the same, each frame naming a model.
- hooks: answer initialize; on the user message send N hook_callback requests one at a
  time, each waiting for its answer; then a result.
- storm: answer initialize; on the user message send N hook_callback requests at once,
  cancel the even ones, wait for the N/2 answers, then a result.
- bigline: one frame whose line is N bytes, then a result.
- backlog: N assistant frames as in flood, then one hook_callback request; once it is
  answered, a result that carries how long the answer took (``hook_latency``, seconds).
"""

from __future__ import annotations

import json
import os
import sys
import time


def out(data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(1, view) :]


def lines_stdin():
    """Raw non-empty lines from stdin, as they arrive."""
    buf = b""
    while True:
        data = os.read(0, 1 << 16)
        if not data:
            return
        buf += data
        *lines, buf = buf.split(b"\n")
        for line in lines:
            if line.strip():
                yield line


def hook(i: int) -> bytes:
    return (
        json.dumps(
            {
                "type": "control_request",
                "request_id": f"h{i}",
                "request": {
                    "subtype": "hook_callback",
                    "callback_id": "hook_0",
                    "input": {"hook_event_name": "PreToolUse", "n": i},
                    "tool_use_id": None,
                },
            }
        ).encode()
        + b"\n"
    )


# With the fields the official SDK's message parser requires (its query() reads it).
RESULT = (
    b'{"type":"result","subtype":"success","is_error":false,"session_id":"bench",'
    b'"duration_ms":0,"duration_api_ms":0,"num_turns":1}\n'
)


def main() -> None:
    mode, n = os.environ.get("BENCH_MODE", "flood"), int(os.environ.get("BENCH_N", "100000"))
    payload = b""
    if mode in ("flood", "backlog", "sdkflood"):
        # sdkflood: the same frames with the model the official SDK's parser requires.
        model = b'"model":"bench",' if mode == "sdkflood" else b""
        text = "x" * 180
        payload = b"".join(
            b'{"type":"assistant","message":{"role":"assistant",'
            + model
            + b'"content":[{"type":"text","text":"'
            + text.encode()
            + b'"}]},"parent_tool_use_id":null,"session_id":"bench","n":'
            + str(i).encode()
            + b"}\n"
            for i in range(n)
        )
    elif mode == "bigline":
        pad = n - len(b'{"type":"assistant","pad":""}')
        payload = b'{"type":"assistant","pad":"' + b"x" * pad + b'"}\n'
    incoming = lines_stdin()
    for line in incoming:
        frame = json.loads(line)
        if frame.get("type") == "control_request":  # initialize
            out(
                json.dumps(
                    {
                        "type": "control_response",
                        "response": {
                            "subtype": "success",
                            "request_id": frame["request_id"],
                            "response": {"commands": []},
                        },
                    }
                ).encode()
                + b"\n"
            )
        elif frame.get("type") == "user":
            break
    if mode in ("flood", "bigline", "sdkflood"):
        out(payload)
    elif mode == "hooks":
        # Requests prepared in advance and answers checked without parsing: the emitter's
        # own cost is paid by every contender alike, so it is kept as small as it can be.
        requests = [hook(i) for i in range(n)]
        for request in requests:
            out(request)
            answer = next(incoming)
            assert b'"control_response"' in answer, answer
    elif mode == "backlog":
        out(payload)
        sent = time.perf_counter()
        out(hook(n))
        answer = next(incoming)
        latency = time.perf_counter() - sent
        assert b'"control_response"' in answer, answer
        out(b'{"type":"result","subtype":"success","hook_latency":%f}\n' % latency)
        for _ in incoming:
            pass
        return
    elif mode == "storm":
        out(b"".join(hook(i) for i in range(n)))
        out(
            b"".join(
                json.dumps({"type": "control_cancel_request", "request_id": f"h{i}"}).encode()
                + b"\n"
                for i in range(0, n, 2)
            )
        )
        answered = 0
        while answered < n // 2:
            answered += b'"control_response"' in next(incoming)
    out(RESULT)
    for _ in incoming:  # exit on stdin EOF, like the CLI
        pass


if __name__ == "__main__":
    sys.exit(main())
