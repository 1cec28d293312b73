"""The official SDK over CtlwireTransport, against the real Claude Code CLI offline.

Each scenario runs twice, on the SDK's own transport and on CtlwireTransport, and must
give the same messages in the same order and the same callbacks. Then the ways out of a
session: an early break, an exception, a cancelled task; no process may be left.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from claude_agent_sdk import (
    AssistantMessage,
    ClaudeAgentOptions,
    ClaudeSDKClient,
    HookMatcher,
    PermissionResultAllow,
    ResultMessage,
    SystemMessage,
    ToolResultBlock,
    UserMessage,
    create_sdk_mcp_server,
    query,
    tool,
)
from helpers import descendants

from ctlwire.fixtures.fake_api import FakeMessagesAPI
from ctlwire.fixtures.real_cli import offline_environment
from ctlwire.sdk import CtlwireTransport

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]
GONE_WITHIN = 2.0


class Setup:
    """One test's real CLI, fake API, throwaway HOME and working folder."""

    def __init__(self, tmp_path: Path, cli: Path, api: FakeMessagesAPI) -> None:
        self.tmp_path, self.cli, self.api = tmp_path, cli, api
        self.runs = 0

    def options(self, **extra: Any) -> ClaudeAgentOptions:
        self.runs += 1
        home, work = self.tmp_path / f"home{self.runs}", self.tmp_path / f"work{self.runs}"
        home.mkdir()
        work.mkdir()
        env = offline_environment(self.api.environment(str(home)))
        return ClaudeAgentOptions(cli_path=str(self.cli), cwd=work, env=env, **extra)


@pytest.fixture
def setup(tmp_path: Path, ctlwire_real_cli: Path, ctlwire_fake_api: FakeMessagesAPI) -> Setup:
    return Setup(tmp_path, ctlwire_real_cli, ctlwire_fake_api)


def script(tool_name: str, tool_input: dict[str, Any]) -> str:
    spec = json.dumps({"tool": tool_name, "input": tool_input})
    return f"Please do the thing.\nSCRIPT:{spec}"


def describe(message: Any) -> str:
    """A message's type, and what tells messages of one type apart in these turns."""
    name = type(message).__name__
    if isinstance(message, SystemMessage | ResultMessage):
        return f"{name}:{message.subtype}"
    if isinstance(message, UserMessage) and isinstance(message.content, list):
        blocks = [type(b).__name__ for b in message.content]
        return f"{name}:{','.join(blocks)}"
    if isinstance(message, AssistantMessage):
        return f"{name}:{','.join(type(b).__name__ for b in message.content)}"
    return name


def tool_texts(messages: list[Any]) -> list[str]:
    return [
        json.dumps(block.content)
        for m in messages
        if isinstance(m, UserMessage) and isinstance(m.content, list)
        for block in m.content
        if isinstance(block, ToolResultBlock)
    ]


class Callbacks:
    """A PreToolUse hook, a can_use_tool callback and an in-process MCP tool that log
    what they see; can_use_tool holds a Write until the CLI cancels it."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.holding = anyio.Event()

        @tool("echo", "Echo the given text back", {"text": str})
        async def echo(args: dict[str, Any]) -> dict[str, Any]:
            self.calls.append(f"mcp:{args['text']}")
            return {"content": [{"type": "text", "text": f"echo: {args['text']}"}]}

        self.server = create_sdk_mcp_server("demo", "0.0.1", [echo])

    async def pre_tool_use(self, data: Any, tool_use_id: Any, context: Any) -> Any:
        self.calls.append(f"hook:{data['tool_name']}")
        return {}

    async def can_use_tool(self, name: str, tool_input: dict[str, Any], context: Any) -> Any:
        self.calls.append(f"permission:{name}")
        if name == "Write":
            self.holding.set()
            try:
                await anyio.sleep_forever()
            finally:
                self.calls.append("permission:cancelled")
        return PermissionResultAllow(updated_input=tool_input)

    def options(self, setup: Setup) -> ClaudeAgentOptions:
        return setup.options(
            hooks={"PreToolUse": [HookMatcher(None, [self.pre_tool_use])]},
            can_use_tool=self.can_use_tool,
            mcp_servers={"demo": self.server},
        )


async def one_query(setup: Setup, ours: bool) -> tuple[list[Any], list[str]]:
    """query() with a streamed prompt, the hook, can_use_tool and the MCP tool."""
    callbacks = Callbacks()
    options = callbacks.options(setup)
    done = anyio.Event()

    async def prompt() -> AsyncIterator[dict[str, Any]]:
        text = script("mcp__demo__echo", {"text": "hi from mcp"})
        yield {"type": "user", "message": {"role": "user", "content": text}}
        await done.wait()  # stdin stays open for the callbacks until the result

    transport = CtlwireTransport(prompt(), options) if ours else None
    messages = []
    with anyio.fail_after(60):
        async for message in query(prompt=prompt(), options=options, transport=transport):
            messages.append(message)
            if isinstance(message, ResultMessage):
                done.set()
    return messages, callbacks.calls


async def client_session(setup: Setup, ours: bool) -> tuple[list[Any], list[str]]:
    """ClaudeSDKClient: permission modes, a turn through the MCP tool, then a turn whose
    Write permission is pending when the client interrupts."""
    callbacks = Callbacks()
    options = callbacks.options(setup)
    transport = CtlwireTransport("", options) if ours else None
    messages: list[Any] = []
    never = Path(str(options.cwd)) / "never.txt"
    with anyio.fail_after(90):
        async with ClaudeSDKClient(options, transport=transport) as client:
            await client.set_permission_mode("acceptEdits")
            await client.set_permission_mode("default")
            await client.query(script("mcp__demo__echo", {"text": "hi from mcp"}))
            messages += [m async for m in client.receive_response()]
            await client.query(script("Write", {"file_path": str(never), "content": "x"}))
            await callbacks.holding.wait()
            await client.interrupt()
            messages += [m async for m in client.receive_response()]
    assert not never.exists()
    return messages, callbacks.calls


@pytest.mark.parametrize("scenario", [one_query, client_session])
async def test_same_turns_as_the_sdks_own_transport(
    setup: Setup, scenario: Any, anyio_backend: str
) -> None:
    theirs, their_calls = await scenario(setup, ours=False)
    ours, our_calls = await scenario(setup, ours=True)
    assert [describe(m) for m in ours] == [describe(m) for m in theirs]
    assert our_calls == their_calls
    assert "hook:mcp__demo__echo" in our_calls and "mcp:hi from mcp" in our_calls
    assert "permission:mcp__demo__echo" in our_calls
    assert any("echo: hi from mcp" in text for text in tool_texts(ours))
    results = [m for m in ours if isinstance(m, ResultMessage)]
    assert results[0].subtype == "success"
    if scenario is client_session:
        assert our_calls[-2:] == ["permission:Write", "permission:cancelled"]
        assert len(results) == 2


async def gone_within(seconds: float) -> float:
    """Seconds until no process is left below this one; fails after ``seconds``."""
    started = time.monotonic()
    while descendants():
        elapsed = time.monotonic() - started
        assert elapsed < seconds, f"still running after {elapsed:.2f} s: {descendants()}"
        await anyio.sleep(0.02)
    return time.monotonic() - started


async def test_an_early_break_out_of_query_leaves_no_process(
    setup: Setup, anyio_backend: str
) -> None:
    options = setup.options()
    transport = CtlwireTransport("Say hello.", options)
    with anyio.fail_after(60):
        async for message in query(prompt="Say hello.", options=options, transport=transport):
            if isinstance(message, SystemMessage):
                assert transport.pid in descendants()
                break  # the generator is finalized later, by the event loop
    await gone_within(GONE_WITHIN)


async def test_an_exception_inside_the_client_leaves_no_process(
    setup: Setup, anyio_backend: str
) -> None:
    options = setup.options()
    with pytest.raises(LookupError):
        async with ClaudeSDKClient(options, transport=CtlwireTransport("", options)) as client:
            await client.query("Say hello.")
            async for message in client.receive_messages():
                if isinstance(message, AssistantMessage):
                    assert descendants()
                    raise LookupError("the caller's own failure")
    await gone_within(GONE_WITHIN)


async def test_a_cancelled_task_holding_the_client_leaves_no_process(
    setup: Setup, anyio_backend: str
) -> None:
    options = setup.options()
    talking = anyio.Event()

    async def hold() -> None:
        async with ClaudeSDKClient(options, transport=CtlwireTransport("", options)) as client:
            await client.query("Say hello.")
            async for message in client.receive_messages():
                if isinstance(message, ResultMessage):
                    talking.set()  # the session is idle, the CLI still runs
        raise AssertionError("the message stream ended by itself")

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            tg.start_soon(hold)
            await talking.wait()
            assert descendants()
            tg.cancel_scope.cancel()
    await gone_within(GONE_WITHIN)
