"""``python sdk_launch_probe.py``: for each set of options, what the installed official
SDK hands to ``anyio.open_process`` beside what `ctlwire.sdk.build_launch` builds.

Run in a fresh interpreter whose PYTHONPATH picks the SDK version; prints one JSON
object: the SDK's version, the options no case covers, and every difference found.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any

import anyio
import claude_agent_sdk
from claude_agent_sdk import ClaudeAgentOptions, create_sdk_mcp_server, tool

from ctlwire.sdk import build_launch


@tool("echo", "Echo", {"text": str})
async def echo(args: dict[str, Any]) -> dict[str, Any]:
    return {"content": []}


async def allow(name: str, tool_input: dict[str, Any], context: Any) -> Any:
    return None


HERE = Path(sys.argv[1])
SETTINGS = HERE / "settings.json"
SCHEMA = {"type": "object", "properties": {"a": {"type": "string"}}}
# One case per option the command or environment can depend on (some have several).
CASES: dict[str, list[dict[str, Any]]] = {
    "tools": [{"tools": ["Bash", "Read"]}, {"tools": []}, {"tools": {"type": "preset"}}],
    "allowed_tools": [{"allowed_tools": ["Read", "Bash(ls:*)"]}],
    "system_prompt": [
        {"system_prompt": "Be brief."},
        {"system_prompt": {"type": "preset", "preset": "claude_code", "append": "More."}},
        {"system_prompt": {"type": "preset", "preset": "claude_code"}},
        {"system_prompt": {"type": "file", "path": "/tmp/prompt.md"}},
    ],
    "mcp_servers": [
        {
            "mcp_servers": {
                "demo": create_sdk_mcp_server("demo", "1.0", [echo]),
                "ext": {"type": "stdio", "command": "server", "args": ["-v"]},
            }
        },
        {"mcp_servers": "/tmp/mcp.json"},
    ],
    "strict_mcp_config": [{"strict_mcp_config": True}],
    "permission_mode": [{"permission_mode": "acceptEdits"}, {"permission_mode": "plan"}],
    "continue_conversation": [{"continue_conversation": True}],
    "resume": [{"resume": "abc-123"}, {"resume": "-dash"}],
    "session_id": [{"session_id": "5e1f0000-0000-4000-8000-000000000001"}],
    "max_turns": [{"max_turns": 3}],
    "max_budget_usd": [{"max_budget_usd": 0.5}],
    "disallowed_tools": [{"disallowed_tools": ["Write", "Edit"]}],
    "model": [{"model": "claude-fake-1"}],
    "fallback_model": [{"fallback_model": "claude-fake-2"}],
    "betas": [{"betas": ["context-1m-2025-08-07"]}],
    "permission_prompt_tool_name": [{"permission_prompt_tool_name": "stdio"}],
    "cwd": [{"cwd": str(HERE)}, {"cwd": HERE}],
    "cli_path": [{"cli_path": "/opt/claude/bin/claude"}, {"cli_path": Path("/usr/bin/claude")}],
    "settings": [{"settings": '{"a": 1}'}, {"settings": str(SETTINGS)}],
    "add_dirs": [{"add_dirs": ["/tmp/a", Path("/tmp/b")]}],
    "env": [{"env": {"FOO": "bar", "CLAUDE_CODE_ENTRYPOINT": "mine"}}],
    "extra_args": [{"extra_args": {"debug-to-stderr": None, "foo": "bar", "neg": "-x"}}],
    "user": [{"user": "nobody"}],
    "include_partial_messages": [{"include_partial_messages": True}],
    "include_hook_events": [{"include_hook_events": True}],
    "fork_session": [{"fork_session": True, "resume": "abc"}],
    "resume_session_at": [{"resume_session_at": "msg-1", "resume": "abc"}],
    "resume_drops_turn": [{"resume_drops_turn": "", "resume": "abc"}],
    "setting_sources": [{"setting_sources": ["project"]}, {"setting_sources": []}],
    "skills": [{"skills": ["pdf", "plugin:xlsx"]}, {"skills": "all"}],
    "sandbox": [
        {"sandbox": {"enabled": True}},
        {"sandbox": {"enabled": True}, "settings": '{"b": 2}', "cwd": str(HERE)},
        {"sandbox": {"enabled": False}, "settings": "settings.json", "cwd": str(HERE)},
    ],
    "plugins": [{"plugins": [{"type": "local", "path": "/tmp/plugin"}]}],
    "max_thinking_tokens": [{"max_thinking_tokens": 2048}],
    "thinking": [
        {"thinking": {"type": "adaptive"}},
        {"thinking": {"type": "enabled", "budget_tokens": 1024, "display": "summarized"}},
        {"thinking": {"type": "disabled"}, "max_thinking_tokens": 10},
    ],
    "effort": [{"effort": "high"}],
    "output_format": [{"output_format": {"type": "json_schema", "schema": SCHEMA}}],
    "enable_file_checkpointing": [{"enable_file_checkpointing": True}],
    "task_budget": [{"task_budget": {"total": 1000}}],
    "client_app": [{"client_app": "my-app/1.0"}, {"client_app": ""}],
    "session_store": [{"session_store": object()}],
    "can_use_tool": [{"can_use_tool": allow}],
}
# Options the SDK sends in the initialize request or uses in-process: never in the command.
IN_PROCESS = {
    "max_buffer_size",
    "debug_stderr",
    "stderr",
    "hooks",
    "forward_subagent_text",
    "verbatim_prompts",
    "agents",
    "session_store_flush",
    "load_timeout_ms",
}


class Captured(Exception):
    pass


async def sdk_launch(options: ClaudeAgentOptions) -> dict[str, Any]:
    """What ``query()`` with the SDK's own transport passes to anyio.open_process."""
    seen: dict[str, Any] = {}

    async def capture(command: list[str], **kwargs: Any) -> Any:
        seen.update(kwargs, argv=list(command))
        raise Captured

    real = anyio.open_process
    anyio.open_process = capture  # type: ignore[assignment]
    try:
        async for _ in claude_agent_sdk.query(prompt="hi", options=options):
            pass
    except claude_agent_sdk.CLIConnectionError as exc:
        if not isinstance(exc.__cause__, Captured):
            return {"error": str(exc)}
    finally:
        anyio.open_process = real
    return {k: seen[k] for k in ("argv", "cwd", "env", "user")}


async def ours(options: ClaudeAgentOptions) -> dict[str, Any]:
    try:
        launch = await build_launch("hi", options)
    except claude_agent_sdk.CLIConnectionError as exc:
        return {"error": str(exc)}
    return {"argv": launch.argv, "cwd": launch.cwd, "env": launch.env, "user": launch.user}


async def main() -> None:
    SETTINGS.write_text('{"permissions": {"allow": ["Read"]}}')
    # What an outer Claude Code session leaves in the environment: the SDK drops both.
    os.environ["CLAUDECODE"] = "1"
    os.environ["CLAUDE_AGENT_SDK_DERIVED_CLIENT_APP"] = "outer-app"
    fields = {f.name for f in dataclasses.fields(ClaudeAgentOptions)}
    differences = []
    compared = refused = 0
    for name, variants in [("defaults", [{}]), *CASES.items()]:
        for kwargs in variants:
            options = ClaudeAgentOptions(**kwargs)
            theirs, mine = await sdk_launch(options), await ours(options)
            compared += 1
            refused += "error" in theirs
            if theirs != mine:
                case = {"option": name, "kwargs": repr(kwargs)[:200], "sdk": theirs, "ours": mine}
                differences.append(case)
    print(
        json.dumps(
            {
                "version": claude_agent_sdk.__version__,
                "compared": compared,
                "refused": refused,
                "uncovered": sorted(fields - set(CASES) - IN_PROCESS),
                "unknown": sorted((set(CASES) | IN_PROCESS) - fields),
                "differences": differences,
            },
            default=str,
        )
    )


anyio.run(main)
