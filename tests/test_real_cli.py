"""End to end against the real Claude Code CLI, offline, on asyncio and trio.

The CLI talks only to a fake Messages API on 127.0.0.1 (also set as its proxy). Every
run is recorded; the log is sanitized and must replay. ``CTLWIRE_UPDATE_LOGS=1`` also
writes it into ``fixtures/logs/`` (done once, on asyncio, to refresh the shipped logs).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from ctlwire.fixtures.command import fake_cli_argv
from ctlwire.fixtures.fake_api import FakeMessagesAPI, Turn
from ctlwire.fixtures.log import read_log
from ctlwire.fixtures.real_cli import (
    cli_version,
    offline_environment,
    project_replacements,
    real_cli_argv,
    sanitize,
)
from ctlwire.fixtures.recording import RecordingTransport
from ctlwire.fixtures.records import user, write_log
from ctlwire.fixtures.replay import replay_log
from ctlwire.protocol import ControlSession, HookMatcher, RequestContext, SessionClosed
from ctlwire.transport import ProcessExited, SubprocessTransport

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]
SHIPPED = Path(__file__).parents[1] / "fixtures" / "logs"


class Run:
    """One real-CLI session in a throwaway HOME and working directory."""

    def __init__(self, tmp_path: Path, cli: Path, api: FakeMessagesAPI, name: str) -> None:
        self.home = tmp_path / "home"
        self.work = tmp_path / "work"
        self.home.mkdir()
        self.work.mkdir()
        self.cli, self.api, self.name = cli, api, name
        self.log = tmp_path / f"{name}.jsonl"
        self.cli_version = cli_version(cli)

    @asynccontextmanager
    async def session(
        self,
        handlers: Mapping[str, Any] | None = None,
        hooks: Mapping[str, Sequence[HookMatcher]] | None = None,
        mcp: Sequence[str] = (),
    ) -> AsyncIterator[tuple[ControlSession, RecordingTransport]]:
        inner = SubprocessTransport(
            real_cli_argv(self.cli, mcp),
            cwd=self.work,
            env=offline_environment(self.api.environment(str(self.home))),
            close_timeout=10,
        )
        async with (
            RecordingTransport(inner, self.log, cli_version=self.cli_version) as transport,
            ControlSession(transport, handlers=handlers, hooks=hooks) as session,
        ):
            yield session, transport

    def prompt(self, tool: str, tool_input: dict[str, Any]) -> dict[str, Any]:
        spec = json.dumps({"tool": tool, "input": tool_input})
        return user(f"Please do the thing.\nSCRIPT:{spec}")

    async def assert_replays(self, anyio_backend: str) -> None:
        """The recorded traffic, with machine paths replaced, replays against the fake CLI."""
        places = {**project_replacements(str(self.work), str(self.home)), str(self.cli): "claude"}
        clean = sanitize(read_log(self.log), places)
        target = self.log.with_name(f"real_{self.name}.jsonl")
        write_log(target, clean.records, clean.header)
        text = target.read_text()
        assert str(self.work) not in text and str(self.home) not in text
        assert str(self.cli) not in text  # the CLI's install path is this machine's too
        assert "pytest-of" not in text  # nor the CLI's slug of the work folder
        result = await replay_log(read_log(target), fake_cli_argv(target, "--timeout", "5"))
        assert result.ok, result.summary()
        if os.environ.get("CTLWIRE_UPDATE_LOGS") and anyio_backend == "asyncio":
            shutil.copy(target, SHIPPED / target.name)


@pytest.fixture
def run(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    ctlwire_real_cli: Path,
    ctlwire_fake_api: FakeMessagesAPI,
) -> Iterator[Run]:
    name = request.node.originalname.removeprefix("test_")
    yield Run(tmp_path, ctlwire_real_cli, ctlwire_fake_api, name)
    # Nothing but loopback ever reached the fake API, and nothing tried to leave through it.
    for logged in ctlwire_fake_api.requests:
        assert logged.client == "127.0.0.1", logged
        assert not logged.proxied, f"the CLI tried to reach {logged.path}"


async def read_until_result(session: ControlSession) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    seen = []
    with anyio.fail_after(30):
        async for message in session.messages():
            seen.append(message)
            if message["type"] == "result":
                return seen, message
    raise AssertionError(f"no result; got {[m['type'] for m in seen]}")


async def drain_after_eof(session: ControlSession) -> int | None:
    """Close stdin and read to the end; the exit code, without hanging on a failure."""
    await session.end_input()
    with anyio.fail_after(15):
        try:
            async for _ in session.messages():
                pass
        except SessionClosed as exc:
            assert isinstance(exc.cause, ProcessExited)
            return exc.cause.returncode
    return 0


def tool_results(messages: list[dict[str, Any]]) -> list[str]:
    out = []
    for m in messages:
        content = m.get("message", {}).get("content")
        for block in content if m["type"] == "user" and isinstance(content, list) else []:
            if block.get("type") == "tool_result":
                inner = block.get("content")
                out.append(inner if isinstance(inner, str) else json.dumps(inner))
    return out


async def test_offline_control_requests(run: Run, anyio_backend: str) -> None:
    async def noop(inp: dict[str, Any], tool_use_id: str | None, ctx: RequestContext) -> Any:
        return {}

    hooks = {"PreToolUse": [HookMatcher("Bash", [noop], timeout=5)]}
    async with run.session(hooks=hooks) as (session, _):
        info = await session.initialize()
        assert any(c["name"] for c in info["commands"])
        assert await session.request({"subtype": "set_permission_mode", "mode": "plan"}) == {
            "mode": "plan"
        }
        assert "mcpServers" in await session.request({"subtype": "mcp_status"})
        assert await drain_after_eof(session) == 0
    assert run.api.requests == []  # no turn, so no API call at all
    await run.assert_replays(anyio_backend)


async def test_write_turn(run: Run, anyio_backend: str) -> None:
    order: list[str] = []

    async def pre(inp: dict[str, Any], tool_use_id: str | None, ctx: RequestContext) -> Any:
        order.append(f"pre:{inp['tool_name']}")
        return {"continue": True}

    async def post(inp: dict[str, Any], tool_use_id: str | None, ctx: RequestContext) -> Any:
        order.append(f"post:{inp['tool_name']}")
        return {}

    async def permit(request: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        order.append(f"permission:{request['tool_name']}")
        return {"behavior": "allow", "updatedInput": request["input"]}

    hooks = {"PreToolUse": [HookMatcher(None, [pre])], "PostToolUse": [HookMatcher(None, [post])]}
    async with run.session(handlers={"can_use_tool": permit}, hooks=hooks) as (session, _):
        await session.initialize()
        target = run.work / "hello.txt"
        await session.send(run.prompt("Write", {"file_path": str(target), "content": "hi\n"}))
        messages, result = await read_until_result(session)
        assert result["subtype"] == "success"
        assert await drain_after_eof(session) == 0
    assert order == ["pre:Write", "permission:Write", "post:Write"]
    assert target.read_text() == "hi\n"
    assert any("hello.txt" in r for r in tool_results(messages))
    await run.assert_replays(anyio_backend)


async def test_in_process_mcp_server(run: Run, anyio_backend: str) -> None:
    methods: list[str] = []

    async def mcp(request: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        assert request["server_name"] == "demo"
        message = request["message"]
        methods.append(message["method"])
        if "id" not in message:  # a notification
            return {"mcp_response": {"jsonrpc": "2.0", "result": {}}}
        if message["method"] == "initialize":
            result: dict[str, Any] = {
                "protocolVersion": message["params"]["protocolVersion"],
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "demo", "version": "0.0.1"},
            }
        elif message["method"] == "tools/list":
            schema = {"type": "object", "properties": {"text": {"type": "string"}}}
            result = {"tools": [{"name": "echo", "description": "Echo", "inputSchema": schema}]}
        elif message["method"] == "tools/call":
            text = message["params"]["arguments"]["text"]
            result = {"content": [{"type": "text", "text": f"echo: {text}"}]}
        else:
            return {
                "mcp_response": {
                    "jsonrpc": "2.0",
                    "id": message["id"],
                    "error": {"code": -32601, "message": "no such method"},
                }
            }
        return {"mcp_response": {"jsonrpc": "2.0", "id": message["id"], "result": result}}

    async def permit(request: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        return {"behavior": "allow", "updatedInput": request["input"]}

    handlers = {"mcp_message": mcp, "can_use_tool": permit}
    async with run.session(handlers=handlers, mcp=["demo"]) as (session, _):
        await session.initialize()
        await session.send(run.prompt("mcp__demo__echo", {"text": "hi from mcp"}))
        messages, _ = await read_until_result(session)
        assert await drain_after_eof(session) == 0
    assert methods[:3] == ["initialize", "notifications/initialized", "tools/list"]
    assert "tools/call" in methods
    assert any("echo: hi from mcp" in r for r in tool_results(messages))
    await run.assert_replays(anyio_backend)


async def test_slow_hook_is_cancelled_by_the_cli(run: Run, anyio_backend: str) -> None:
    finals: list[str] = []
    contexts: list[RequestContext] = []

    async def slow(inp: dict[str, Any], tool_use_id: str | None, ctx: RequestContext) -> Any:
        contexts.append(ctx)
        try:
            await anyio.sleep_forever()
        finally:
            finals.append(ctx.request_id)
        return {}

    hooks = {"PreToolUse": [HookMatcher(None, [slow], timeout=2)]}
    async with run.session(hooks=hooks) as (session, _):
        await session.initialize()
        await session.send(run.prompt("Bash", {"command": "echo hi", "description": "Print"}))
        messages, result = await read_until_result(session)
        assert await drain_after_eof(session) == 0
    assert finals == [contexts[0].request_id] and contexts[0].cancelled
    assert any("did not respond before its timeout" in r for r in tool_results(messages))
    assert result["type"] == "result"
    records = read_log(run.log).records
    answers = [
        x
        for x in records
        if x.src == "sdk"
        and x.frame
        and x.frame["type"] == "control_response"
        and x.frame["response"]["request_id"] == contexts[0].request_id
    ]
    assert answers == [], "something was written for the cancelled hook"
    await run.assert_replays(anyio_backend)


async def test_interrupt_while_permission_pending(run: Run, anyio_backend: str) -> None:
    asked = anyio.Event()
    finals: list[bool] = []

    async def hold(request: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        asked.set()
        try:
            await anyio.sleep_forever()
        finally:
            finals.append(ctx.cancelled)
        return {}

    async with run.session(handlers={"can_use_tool": hold}) as (session, _):
        await session.initialize()
        target = run.work / "never.txt"
        await session.send(run.prompt("Write", {"file_path": str(target), "content": "x"}))
        with anyio.fail_after(30):
            await asked.wait()
        assert await session.request({"subtype": "interrupt"}, timeout=10) is not None
        _, result = await read_until_result(session)
        assert result["subtype"] == "error_during_execution"
        assert await drain_after_eof(session) == 1  # reported, without a hang
    assert finals == [True]
    assert not target.exists()
    await run.assert_replays(anyio_backend)


async def test_interrupt_during_a_slow_stream(run: Run, anyio_backend: str) -> None:
    run.api.add_turns(Turn(text="word " * 200, chunks=100, delay=0.03))
    async with run.session() as (session, _):
        await session.initialize()
        await session.send(user("Tell me a long story."))
        with anyio.fail_after(30):
            while not run.api.requests:  # noqa: ASYNC110 - the stream has started
                await anyio.sleep(0.01)
        await session.request({"subtype": "interrupt"}, timeout=10)
        _, result = await read_until_result(session)
        assert result["type"] == "result"
        await drain_after_eof(session)
    await run.assert_replays(anyio_backend)


async def test_stdin_closed_early_with_a_hook_pending(run: Run, anyio_backend: str) -> None:
    asked = anyio.Event()
    finals: list[str] = []

    async def slow(inp: dict[str, Any], tool_use_id: str | None, ctx: RequestContext) -> Any:
        asked.set()
        try:
            await anyio.sleep_forever()
        finally:
            finals.append("finally")
        return {}

    hooks = {"PreToolUse": [HookMatcher(None, [slow], timeout=30)]}
    async with run.session(hooks=hooks) as (session, transport):
        await session.initialize()
        await session.send(run.prompt("Bash", {"command": "echo hi", "description": "Print"}))
        with anyio.fail_after(30):
            await asked.wait()
        code = await drain_after_eof(session)
    assert transport.returncode is not None and code == transport.returncode
    assert finals == ["finally"]
    await run.assert_replays(anyio_backend)
