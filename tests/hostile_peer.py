"""A scriptable hostile CLI: ``python hostile_peer.py SCRIPT.json``.

The script is a list of steps, run in order. Bytes are JSON strings read as latin-1, so
any byte sequence can be written. Everything the SDK writes is read by a thread (with
the standard library's JSON, which keeps lone surrogates) and can be waited for or
reported back as a ``{"type": "report", ...}`` frame.

Steps (one key each): ``write`` bytes; ``write_slowly`` bytes, one byte per write;
``write_answer`` a template whose ``{id}`` becomes the id of the SDK request last
awaited; ``await_request`` a subtype; ``await_answer`` an id; ``await_lines`` a count
of SDK lines; ``stop_reading`` / ``resume_reading``; ``wait_file`` a path; ``report``;
``close_stdout``; ``close_stdin`` (first step only); ``sigstop``; ``exit`` a code;
``drain`` (read until stdin EOF); ``spawn_holder`` (a grandchild keeping stdout open).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

DEADLINE = 20.0

received: list[Any] = []
changed = threading.Condition()
reading = threading.Event()
reading.set()
state: dict[str, Any] = {"last": None, "eof": False}


def read_stdin() -> None:
    pending = b""
    while True:
        reading.wait()
        try:
            data = os.read(0, 65536)
        except OSError:
            data = b""
        if not data:
            break
        pending += data
        *lines, pending = pending.split(b"\n")
        with changed:
            for line in lines:
                if line.strip():
                    received.append(json.loads(line.decode("utf-8", "surrogatepass")))
            changed.notify_all()
    with changed:
        state["eof"] = True
        changed.notify_all()


def wait_for(predicate: Any, what: str) -> Any:
    deadline = time.monotonic() + DEADLINE
    with changed:
        while (found := predicate()) is None:
            if state["eof"]:
                fail(f"stdin closed while waiting for {what}")
            left = deadline - time.monotonic()
            if left <= 0:
                fail(f"timed out waiting for {what}")
            changed.wait(left)
    return found


def fail(text: str) -> None:
    sys.stderr.write(f"hostile_peer: {text}\n")
    sys.stderr.flush()
    os._exit(91)


def out(data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(1, view) :]


def find_request(subtype: str) -> Any:
    taken = state.setdefault("taken", set())
    for frame in received:
        if (
            frame.get("type") == "control_request"
            and frame["request"].get("subtype") == subtype
            and frame["request_id"] not in taken
        ):
            taken.add(frame["request_id"])
            return frame["request_id"]
    return None


def find_answer(request_id: str) -> Any:
    for frame in received:
        if (
            frame.get("type") == "control_response"
            and frame["response"].get("request_id") == request_id
        ):
            return frame
    return None


def run(step: dict[str, Any]) -> None:
    ((kind, arg),) = step.items()
    if kind == "write":
        out(arg.encode("latin-1"))
    elif kind == "write_slowly":
        for byte in arg.encode("latin-1"):
            out(bytes([byte]))
    elif kind == "write_answer":
        out(arg.replace("{id}", state["last"]).encode("latin-1"))
    elif kind == "await_request":
        state["last"] = wait_for(lambda: find_request(arg), f"a {arg} request")
    elif kind == "await_answer":
        wait_for(lambda: find_answer(arg), f"the answer to {arg}")
    elif kind == "await_lines":
        wait_for(lambda: True if len(received) >= arg else None, f"{arg} lines")
    elif kind == "stop_reading":
        reading.clear()
    elif kind == "resume_reading":
        reading.set()
    elif kind == "wait_file":
        deadline = time.monotonic() + DEADLINE
        while not os.path.exists(arg):
            if time.monotonic() > deadline:
                fail(f"timed out waiting for {arg}")
            time.sleep(0.005)  # polling a file the test creates, with a deadline
    elif kind == "report":
        with changed:
            out(json.dumps({"type": "report", "received": received}).encode() + b"\n")
    elif kind == "drain":
        wait_for(lambda: True if state["eof"] else None, "stdin EOF")
    elif kind == "close_stdout":
        os.close(1)
    elif kind == "sigstop":
        os.kill(os.getpid(), signal.SIGSTOP)
    elif kind == "spawn_holder":
        code = "import sys, time; sys.stdin.read(); time.sleep(60)"
        subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE)
    elif kind == "exit":
        os._exit(arg)
    else:
        fail(f"unknown step {kind}")


def main() -> None:
    with open(sys.argv[1]) as script:
        steps = json.load(script)
    if steps and "close_stdin" in steps[0]:  # before a thread blocks in a read of it
        os.close(0)
        steps = steps[1:]
    threading.Thread(target=read_stdin, daemon=True).start()
    for step in steps:
        run(step)
    wait_for(lambda: True if state["eof"] else None, "stdin EOF")
    os._exit(0)


if __name__ == "__main__":
    main()
