"""CtlwireTransport under the official SDK's ``query()``, against the fake CLI and a
hostile one: big lines, bad output, a CLI that dies early, and closing from any task."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import anyio
import pytest
from claude_agent_sdk import (
    AssistantMessage,
    ClaudeAgentOptions,
    CLIConnectionError,
    CLIJSONDecodeError,
    CLINotFoundError,
    ProcessError,
    ResultMessage,
    SystemMessage,
    TextBlock,
    query,
)
from helpers import descendants, force_child, hostile_argv, run_python, script_line
from sdk_support import executable

from ctlwire.fixtures.records import assistant, cli, cli_line, request, result, sdk, success, user
from ctlwire.sdk import BadCLIOutput, CtlwireTransport

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]
MIB = 1 << 20
INIT_OK = {"commands": [], "pending_permission_requests": []}


# For the hostile peer: answer the SDK's initialize, then wait for its prompt.
INIT_ANSWER = {
    "type": "control_response",
    "response": {"subtype": "success", "request_id": "{id}", "response": INIT_OK},
}
HANDSHAKE = [
    {"await_request": "initialize"},
    {"write_answer": script_line(INIT_ANSWER)},
    {"await_lines": 2},
]


SDK_OWN_TRANSPORT = """
import sys, anyio
from claude_agent_sdk import ClaudeAgentOptions, query

async def main():
    try:
        async for _ in query(prompt="hi", options=ClaudeAgentOptions(cli_path=sys.argv[1])):
            pass
    except Exception as exc:
        print(type(exc).__name__)

anyio.run(main)
"""


def turn(*answer: Any) -> list[Any]:
    """A session: the SDK's initialize and prompt, then ``answer`` (records), then a result."""
    return [
        sdk(request("req_1", "initialize")),
        cli(success("req_1", INIT_OK)),
        sdk(user("hi")),
        *answer,
        cli(result()),
    ]


async def run_query(
    cli_path: str, *, ours: bool = True, **options: Any
) -> tuple[list[Any], BaseException | None]:
    """Every message ``query()`` yields, and the error that ended it (or None)."""
    opts = ClaudeAgentOptions(cli_path=cli_path, **options)
    got: list[Any] = []
    try:
        with anyio.fail_after(30):
            transport = CtlwireTransport("hi", opts) if ours else None
            async for message in query(prompt="hi", options=opts, transport=transport):
                got.append(message)
    except Exception as exc:
        return got, exc
    return got, None


def texts(messages: list[Any]) -> list[str]:
    return [
        block.text
        for m in messages
        if isinstance(m, AssistantMessage)
        for block in m.content
        if isinstance(block, TextBlock)
    ]


async def test_a_3_mib_message_arrives_whole(ctlwire_fake_cli: Any, anyio_backend: str) -> None:
    big = "é" * (3 * MIB // 2) + "end"  # 3 MiB of UTF-8, half as many characters
    path = str(ctlwire_fake_cli.executable(turn(cli(assistant(big))), loose=True))
    messages, error = await run_query(path)
    assert error is None
    assert texts(messages) == [big]
    assert isinstance(messages[-1], ResultMessage)
    # The SDK's own transport, on the same CLI, stops at its 1 MiB default. In a fresh
    # interpreter (once): on asyncio it leaves that CLI unreaped, which would trip this one.
    if anyio_backend == "asyncio":
        out = run_python(SDK_OWN_TRANSPORT, path)
        assert out.stdout.split() == ["CLIJSONDecodeError"], out.stderr


async def test_an_80_mib_line_names_the_limit_and_loses_nothing_before(
    ctlwire_fake_cli: Any,
) -> None:
    huge = cli_line(json.dumps({"type": "assistant", "pad": "x" * (80 * MIB)}))
    script = turn(cli(assistant("before")), huge, cli(assistant("after")))
    path = str(ctlwire_fake_cli.executable(script, loose=True))
    messages, error = await run_query(path)
    assert texts(messages) == ["before"]
    assert isinstance(error, CLIJSONDecodeError) and isinstance(error, BadCLIOutput)
    assert "maximum buffer size of 33554432 bytes" in str(error)


async def test_max_buffer_size_counts_bytes(ctlwire_fake_cli: Any) -> None:
    """A line of exactly the limit passes, one byte more fails; multi-byte text counts
    by its bytes (the SDK's own transport counts characters)."""
    frame = {"type": "system", "subtype": "pad", "pad": "é" * 500}
    line = json.dumps(frame, ensure_ascii=False)
    size = len(line.encode())
    for limit, ok in ((size, True), (size - 1, False)):
        script = turn(cli_line(line), cli(assistant("after")))
        path = str(ctlwire_fake_cli.executable(script, loose=True))
        messages, error = await run_query(path, max_buffer_size=limit)
        if ok:
            assert error is None and texts(messages) == ["after"]
            assert any(isinstance(m, SystemMessage) and m.subtype == "pad" for m in messages)
        else:
            assert isinstance(error, CLIJSONDecodeError), error
            assert f"maximum buffer size of {limit} bytes" in str(error)


@pytest.mark.parametrize(
    ("line", "fault"),
    [
        ('{"type": "assistant", "message": \n', "not valid JSON"),
        ('{"type": "assistant", "text": "\xff\xfe"}\n', "not valid UTF-8"),
        ("{oops}\n", "not valid JSON"),
    ],
)
async def test_bad_output_is_an_sdk_error_naming_the_fault(
    tmp_path: Path, line: str, fault: str
) -> None:
    steps = [
        *HANDSHAKE,
        {"write": script_line(assistant("before"))},
        {"write": "[SandboxDebug] noise the SDK skips\n"},
        {"write": line},
        {"write": script_line(assistant("after"))},
    ]
    messages, error = await run_query(executable(tmp_path, hostile_argv(tmp_path, steps)))
    assert texts(messages) == ["before"]
    assert isinstance(error, BadCLIOutput) and isinstance(error, CLIJSONDecodeError)
    assert fault in str(error)


async def test_a_lone_surrogate_is_kept_as_the_sdk_keeps_it(tmp_path: Path) -> None:
    raw = (
        '{"type": "assistant", "message": {"role": "assistant", "model": "m", "content": '
        '[{"type": "text", "text": "cut \\ud83d"}]}}\n'
    )
    steps = [
        *HANDSHAKE,
        {"write": raw},
        {"write": script_line(result())},
    ]
    messages, error = await run_query(executable(tmp_path, hostile_argv(tmp_path, steps)))
    assert error is None and texts(messages) == ["cut \ud83d"]


async def test_a_cli_that_exits_before_the_handshake(tmp_path: Path) -> None:
    cli_path = tmp_path / "dying"
    cli_path.write_text("#!/bin/sh\necho 'no API key' >&2\nexit 3\n")
    cli_path.chmod(0o755)
    lines: list[str] = []
    messages, error = await run_query(str(cli_path), stderr=lines.append)
    assert messages == []
    # The reader sees the exit first (ProcessError) or the initialize write does.
    assert isinstance(error, ProcessError | CLIConnectionError), error
    assert "exit" in str(error) and "3" in str(error) and "no API key" in str(error)
    assert lines == ["no API key"]


async def test_a_cli_that_dies_mid_turn(tmp_path: Path) -> None:
    steps = [
        *HANDSHAKE,
        {"write": script_line(assistant("before"))},
        {"exit": 5},
    ]
    messages, error = await run_query(executable(tmp_path, hostile_argv(tmp_path, steps)))
    assert texts(messages) == ["before"]
    assert isinstance(error, ProcessError) and error.exit_code == 5, error


async def test_a_missing_cli(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-claude")
    _, error = await run_query(missing)
    assert isinstance(error, CLINotFoundError) and missing in str(error)
    _, error = await run_query("/bin/sh", cwd=tmp_path / "gone")
    assert isinstance(error, CLIConnectionError) and "Working directory" in str(error)
    _, error = await run_query("/bin/sh", user="nobody")
    assert isinstance(error, CLIConnectionError) and "options.user" in str(error)


@pytest.mark.parametrize("child", ["best", "portable"])
async def test_close_is_bounded_idempotent_and_from_any_task(
    tmp_path: Path, child: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader blocked in one task, close from another: the reader ends, no process is
    left, close again is a no-op; on the platform's best child process and the portable
    one (Windows's)."""
    if child != "best":
        force_child(child, monkeypatch)
    steps = [{"write": script_line(assistant("hi"))}, {"drain": True}]
    options = ClaudeAgentOptions(cli_path=executable(tmp_path, hostile_argv(tmp_path, steps)))
    transport = CtlwireTransport("hi", options)
    assert not transport.is_ready()
    await transport.connect()
    assert transport.is_ready() and transport.pid in descendants()
    read: list[dict[str, Any]] = []
    first = anyio.Event()

    async def reader() -> None:
        async for message in transport.read_messages():
            read.append(message)
            first.set()

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(reader)
            await first.wait()
            await transport.close()
    assert read[0]["type"] == "assistant" and not transport.is_ready()
    assert descendants() == set()
    await transport.close()
    with pytest.raises(CLIConnectionError):
        await transport.write("{}\n")
    with pytest.raises(CLIConnectionError):
        await transport.connect()


async def test_end_input_closes_the_clis_stdin(tmp_path: Path) -> None:
    steps = [{"drain": True}, {"write": script_line(assistant("saw EOF"))}]
    options = ClaudeAgentOptions(cli_path=executable(tmp_path, hostile_argv(tmp_path, steps)))
    transport = CtlwireTransport("hi", options)
    await transport.connect()
    try:
        await transport.write(json.dumps(user("hi")) + "\n")
        await transport.end_input()
        await transport.end_input()
        with anyio.fail_after(10):
            got = [m async for m in transport.read_messages()]
        assert [m["message"]["content"][0]["text"] for m in got] == ["saw EOF"]
        with pytest.raises(CLIConnectionError, match="end_input"):
            await transport.write("{}\n")
    finally:
        await transport.close()


async def test_a_close_while_connecting_leaves_no_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """close() from another task while connect() looks for the CLI (in a worker thread):
    connect fails with the SDK's error and starts nothing."""
    from claude_agent_sdk._internal.transport.subprocess_cli import SubprocessCLITransport

    looking, go_on = threading.Event(), threading.Event()

    def find_cli(self: Any) -> str:
        looking.set()
        go_on.wait(10)
        return "/bin/cat"

    monkeypatch.setattr(SubprocessCLITransport, "_find_cli", find_cli)
    transport = CtlwireTransport("hi", ClaudeAgentOptions())
    failures: list[BaseException] = []

    async def connect() -> None:
        try:
            await transport.connect()
        except CLIConnectionError as exc:
            failures.append(exc)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(connect)
            await anyio.to_thread.run_sync(looking.wait, 10)
            await transport.close()
            go_on.set()
    assert [str(f) for f in failures] == ["this CtlwireTransport was closed while connecting"]
    assert descendants() == set() and not transport.is_ready()
