"""The reference SDK (claude-agent-sdk) drives ctlwire's fake CLI playing real sessions.

This proves the fake CLI is faithful to a real client: in the looser matching mode, the
reference receives every recorded assistant and result message, and its hook and
permission callbacks get the recorded inputs. asyncio only: the reference SDK no longer
runs on trio (it replaced anyio task groups with raw asyncio tasks).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from claude_agent_sdk import (
    AssistantMessage,
    ClaudeAgentOptions,
    ClaudeSDKClient,
    HookMatcher,
    PermissionResultAllow,
    ResultMessage,
    create_sdk_mcp_server,
    tool,
)
from helpers import real_session, real_session_logs


def recorded(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in real_session(name).read_text().splitlines()][1:]


def cli_frames(records: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [
        x["frame"] for x in records if x["src"] == "cli" and x.get("frame", {}).get("type") == kind
    ]


def cli_requests(records: list[dict[str, Any]], subtype: str) -> list[dict[str, Any]]:
    return [
        f["request"]
        for f in cli_frames(records, "control_request")
        if f["request"]["subtype"] == subtype
    ]


@tool("echo", "Echo the given text back", {"text": str})
async def echo(args: dict[str, Any]) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": f"echo: {args['text']}"}]}


@pytest.mark.parametrize("log", [p.name for p in real_session_logs()])
def test_reference_sdk_drives_the_fake_cli(log: str, ctlwire_fake_cli: Any) -> None:
    asyncio.run(asyncio.wait_for(_drive(log, ctlwire_fake_cli), 60))


async def _drive(log: str, fake: Any) -> None:
    records = recorded(log)
    hook_inputs: list[dict[str, Any]] = []
    permission_calls: list[tuple[str, dict[str, Any]]] = []
    hooked = asyncio.Event()
    slow = log == "slow_hook.jsonl"

    async def on_hook(input_data: Any, tool_use_id: Any, context: Any) -> Any:
        hook_inputs.append(dict(input_data))
        hooked.set()
        if slow and input_data.get("hook_event_name") == "PreToolUse":
            await asyncio.Event().wait()  # overrun: the CLI cancels it
        return {"continue": True} if input_data.get("hook_event_name") == "PreToolUse" else {}

    async def can_use_tool(name: str, tool_input: dict[str, Any], context: Any) -> Any:
        permission_calls.append((name, dict(tool_input)))
        return PermissionResultAllow(updated_input=tool_input)

    options = ClaudeAgentOptions(
        # A hook timeout is only faithful with the recorded gap before the cancel.
        cli_path=str(fake.executable(real_session(log), loose=True, realtime=slow)),
        hooks={
            "PreToolUse": [HookMatcher(None, [on_hook], timeout=2 if slow else None)],
            "PostToolUse": [HookMatcher(None, [on_hook])],
        },
        can_use_tool=can_use_tool,
        mcp_servers=(
            {"sdkdemo": create_sdk_mcp_server("sdkdemo", "0.0.1", [echo])}
            if log == "mcp_sdk.jsonl"
            else {}
        ),
    )
    messages: list[Any] = []
    prompt = cli_prompt(records)
    async with ClaudeSDKClient(options) as client:
        await client.query(prompt)
        if log == "interrupt_tool.jsonl":
            await hooked.wait()
            await client.interrupt()
        async for message in client.receive_response():
            messages.append(message)

    assistants = [m for m in messages if isinstance(m, AssistantMessage)]
    results = [m for m in messages if isinstance(m, ResultMessage)]
    assert len(assistants) == len(cli_frames(records, "assistant"))
    assert len(results) == len(cli_frames(records, "result")) == 1
    assert results[0].session_id == cli_frames(records, "result")[0]["session_id"]
    assert hook_inputs == [r["input"] for r in cli_requests(records, "hook_callback")]
    assert permission_calls == [
        (r["tool_name"], r["input"]) for r in cli_requests(records, "can_use_tool")
    ]


def cli_prompt(records: list[dict[str, Any]]) -> str:
    user = next(x["frame"] for x in records if x["src"] == "sdk" and x["frame"]["type"] == "user")
    return str(user["message"]["content"])
