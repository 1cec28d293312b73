"""`ctlwire show` for a person debugging: what each frame is, at any width, and a summary."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import SHIPPED_LOGS

from ctlwire.fixtures.log import read_log

SLOW_HOOK = SHIPPED_LOGS / "slow_hook.jsonl"  # a PreToolUse hook with a 2 s timeout, cancelled
WRITE_TURN = SHIPPED_LOGS / "real_write_turn.jsonl"
MCP = SHIPPED_LOGS / "real_in_process_mcp_server.jsonl"
# The fields `show --json` has always had: new ones may be added, none removed.
JSON_FIELDS = {
    "line",
    "t",
    "src",
    "kind",
    "summary",
    "request_id",
    "answered_at",
    "latency_ms",
    "outcome",
    "notes",
    "payload",
}


def show(log: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "ctlwire", "show", str(log), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def events(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in show(log, "--json").splitlines()]


def at_line(text: str, line: int) -> str:
    """The timeline row of log line ``line``; what follows its ``id: ``."""
    row = next(x for x in text.splitlines() if re.match(rf"\s*{line} ", x))
    return row.split(": ", 1)[1]


def line_of(log: Path, test: Any) -> int:
    parsed = read_log(log)
    return next(parsed.line_of(i) for i, rec in enumerate(parsed.records) if test(rec))


def request_line(log: Path, subtype: str) -> int:
    return line_of(
        log,
        lambda rec: (
            (rec.frame or {}).get("type") == "control_request"
            and rec.frame["request"]["subtype"] == subtype
        ),
    )


@pytest.mark.parametrize("width", [1, 20, 60, 100])
def test_previews_lead_with_what_identifies_the_frame_at_any_width(width: int) -> None:
    text = show(SLOW_HOOK, "--width", str(width))
    hook = at_line(text, request_line(SLOW_HOOK, "hook_callback"))
    assert hook.startswith("hook_callback PreToolUse Bash (timeout 2s) tool=toolu_"), hook
    init = at_line(text, request_line(SLOW_HOOK, "initialize"))
    assert init.startswith("initialize hooks PreToolUse(timeout 2s) PostToolUse"), init
    write = show(WRITE_TURN, "--width", str(width))
    permission = at_line(write, request_line(WRITE_TURN, "can_use_tool"))
    assert permission.startswith("can_use_tool Write tool=toolu_"), permission
    mcp = show(MCP, "--width", str(width))
    assert at_line(mcp, request_line(MCP, "mcp_message")).startswith("mcp_message demo initialize")
    assert "mcp_message demo tools/call echo" in mcp


def test_results_show_text_verdict_turns_and_cost() -> None:
    text = show(WRITE_TURN, "--width", "200")
    result = at_line(
        text, line_of(WRITE_TURN, lambda rec: (rec.frame or {}).get("type") == "result")
    )
    assert result.startswith("result/success is_error=false turns=2 cost=$0.00068 "), result
    assert '"Done. The tool returned: File created successfully' in result


def test_a_tool_call_its_permission_hooks_and_result_are_linked_by_tool_use_id() -> None:
    found = events(WRITE_TURN)
    call = next(e for e in found if "tool_use " in e["head"])
    tool_use_id = call["tool_use_id"]
    assert tool_use_id and call["tool_call_line"] == call["line"]
    linked = [e for e in found if e["tool_use_id"] == tool_use_id and e is not call]
    kinds = sorted(e["head"].split(" tool=")[0] for e in linked)
    assert kinds == [
        "can_use_tool Write",
        "hook_callback PostToolUse Write",
        "hook_callback PreToolUse Write",
        "user tool_result",
    ]
    assert all(e["tool_call_line"] == call["line"] for e in linked)
    text = show(WRITE_TURN)
    for e in linked:
        row = at_line(text, e["line"])
        assert f"tool={tool_use_id}" in row and f"[tool call of line {call['line']}]" in row


def test_the_timeline_ends_with_a_summary() -> None:
    text = show(SLOW_HOOK)
    hook = request_line(SLOW_HOOK, "hook_callback")
    assert text.splitlines()[-5:] == [
        "# summary",
        "#   requests: 2 (cli hook_callback 1, sdk initialize 1)",
        f"#   cancels: 1 (cli hook_callback line {hook} after 1997.7 ms)",
        f"#   slowest: cli hook_callback line {hook} 1997.7 ms (cancelled), "
        "sdk initialize line 2 430.8 ms (success)",
        "#   exit: code 0 at 3.012s, line 14",
    ]


def test_the_header_keeps_empty_arguments() -> None:
    header = show(SLOW_HOOK).splitlines()[0]
    argv = read_log(SLOW_HOOK).header.argv
    assert "" in argv and "--system-prompt '' --permission-prompt-tool" in header
    shown = header.split("  argv=", 1)[1].rsplit("  cli=", 1)[0]
    assert shlex.split(shown) == argv


def test_json_keeps_its_shape_and_adds_the_links() -> None:
    for event in events(SLOW_HOOK):
        assert set(event) >= JSON_FIELDS, event
        assert {"head", "subtype", "tool_use_id", "tool_call_line"} <= set(event)
        assert event["summary"].startswith(event["head"])
