"""A small CLI stand-in for the many-sessions bench: one turn, as the real CLI frames it.

Answers initialize; answers a user message with one assistant message and a complete
result (every field the official SDK's parser asks for); exits at stdin EOF.
"""

from __future__ import annotations

import json
import os
import sys

ASSISTANT = {
    "type": "assistant",
    "message": {
        "role": "assistant",
        "model": "stand-in",
        "content": [{"type": "text", "text": "hi"}],
    },
    "parent_tool_use_id": None,
    "session_id": "bench",
}
RESULT = {
    "type": "result",
    "subtype": "success",
    "duration_ms": 1,
    "duration_api_ms": 0,
    "is_error": False,
    "num_turns": 1,
    "session_id": "bench",
    "total_cost_usd": 0.0,
    "usage": {},
    "result": "hi",
}


def write(frame: dict[str, object]) -> None:
    os.write(1, json.dumps(frame).encode() + b"\n")


def main() -> None:
    for line in sys.stdin.buffer:
        if not line.strip():
            continue
        frame = json.loads(line)
        if frame.get("type") == "control_request":
            answer = {"subtype": "success", "request_id": frame["request_id"], "response": {}}
            write({"type": "control_response", "response": answer})
        elif frame.get("type") == "user":
            write(ASSISTANT)
            write(RESULT)


if __name__ == "__main__":
    main()
