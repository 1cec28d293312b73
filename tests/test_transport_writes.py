"""Writes and construction, on every child-process implementation: the guard, the typed
stdin errors, and bad arguments that must leave no pipe or process behind."""

from __future__ import annotations

import math
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

import anyio
import pytest
from helpers import force_child, open_fds, read_all

from ctlwire.transport import (
    CtlwireError,
    InputBroken,
    InputClosed,
    SubprocessTransport,
    TransportError,
    memory_transport_pair,
)
from ctlwire.transport._child import KINDS

pytestmark = pytest.mark.anyio

# Reads nothing until SIGUSR1, then prints the length and first byte of each line.
HELD_READER = (
    "import signal, sys\n"
    "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})\n"
    "print('ready', flush=True)\n"
    "signal.sigwait({signal.SIGUSR1})\n"
    "for line in sys.stdin.buffer:\n"
    "    print(len(line), line[:1].decode(), flush=True)\n"
)
BIG = 4 << 20  # several pipe buffers, and more than asyncio's write buffer high mark


@pytest.fixture(autouse=True, params=KINDS)
def child_kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    return force_child(str(request.param), monkeypatch)


def held_reader() -> SubprocessTransport:
    argv = [sys.executable, "-c", HELD_READER]
    return SubprocessTransport(argv, close_timeout=0.2, terminate_timeout=2)


class Guard:
    """A guard that records each call and answers ``allow``."""

    def __init__(self) -> None:
        self.allow = True
        self.calls: list[bool] = []

    def __call__(self) -> bool:
        self.calls.append(self.allow)
        return self.allow


async def test_guard_false_writes_nothing() -> None:
    async with SubprocessTransport([sys.executable, "-c", HELD_READER]) as t:
        assert await t.receive_lines() == [b"ready"]
        guard = Guard()
        guard.allow = False
        assert await t.send(b"guarded\n", guard=guard) is False
        assert guard.calls == [False]
        assert await t.send(b"plain\n") is True
        assert t.pid is not None
        os.kill(t.pid, signal.SIGUSR1)
        await t.end_input()
        assert await read_all(t) == [b"6 p"]


async def test_guard_is_asked_again_after_waiting_for_room(child_kind: str) -> None:
    if child_kind == "portable":
        pytest.skip("anyio's streams take a whole write at once: no wait for room to guard")
    line = b"f" * 4000 + b"\n"  # under PIPE_BUF: the pipe takes all of it or none
    async with held_reader() as t:
        assert await t.receive_lines() == [b"ready"]
        guard = Guard()
        results: dict[int, bool] = {}

        async def sender(n: int) -> None:
            results[n] = await t.send(line, guard=guard)

        async with anyio.create_task_group() as tg:
            n = 0
            while True:  # fill the pipe until a send has to wait for room
                tg.start_soon(sender, n)
                await anyio.wait_all_tasks_blocked()
                if n not in results:
                    break
                n += 1
            asked = len(guard.calls)
            guard.allow = False
            assert t.pid is not None
            os.kill(t.pid, signal.SIGUSR1)  # room again: the waiting send asks the guard
        assert results[n] is False
        assert len(guard.calls) > asked and guard.calls[-1] is False
        await t.end_input()
        lines = await read_all(t)
    assert lines == [b"4001 f"] * n  # the guarded line never reached the peer


async def test_guard_is_asked_when_the_lock_comes_free() -> None:
    async with held_reader() as t:
        assert await t.receive_lines() == [b"ready"]
        guard = Guard()
        results: list[bool] = []

        async def guarded() -> None:
            results.append(await t.send(b"guarded\n", guard=guard))

        async with anyio.create_task_group() as tg:
            tg.start_soon(t.send, b"b" * BIG + b"\n")  # holds the write lock, pipe full
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(guarded)
            await anyio.wait_all_tasks_blocked()
            guard.allow = False
            assert t.pid is not None
            os.kill(t.pid, signal.SIGUSR1)
        assert results == [False] and guard.calls[-1] is False
        await t.end_input()
        assert await read_all(t) == [f"{BIG + 1} b".encode()]


async def test_guard_is_not_asked_once_a_byte_is_written() -> None:
    code = "import sys\nfor line in sys.stdin.buffer: print(len(line), flush=True)"
    async with SubprocessTransport([sys.executable, "-c", code]) as t:
        guard = Guard()
        assert await t.send(b"x" * BIG + b"\n", guard=guard) is True
        assert guard.calls == [True]
        await t.end_input()
        assert await read_all(t) == [str(BIG + 1).encode()]


async def test_send_after_end_input_is_input_closed() -> None:
    async with SubprocessTransport([sys.executable, "-c", "import sys; sys.stdin.read()"]) as t:
        await t.end_input()
        guard = Guard()
        with pytest.raises(InputClosed, match="already closed") as info:
            await t.send(b"late\n", guard=guard)
        assert isinstance(info.value, TransportError) and isinstance(info.value, CtlwireError)
        assert guard.calls == []


async def test_write_cut_part_way_breaks_the_input_for_good(
    child_kind: str, anyio_backend: str
) -> None:
    if child_kind == "portable" and anyio_backend == "asyncio":
        pytest.skip("asyncio's stream buffers a whole write before it can be cancelled")
    async with held_reader() as t:
        assert await t.receive_lines() == [b"ready"]
        async with anyio.create_task_group() as tg:
            tg.start_soon(t.send, b"c" * BIG + b"\n")
            await anyio.wait_all_tasks_blocked()
            tg.cancel_scope.cancel()
        for _ in range(2):
            with pytest.raises(InputBroken, match="cancelled part-way through a line"):
                await t.send(b"next\n")
        await t.end_input()  # still allowed, and closing works as ever


async def test_memory_transport_guard_and_input_closed() -> None:
    transport, peer = memory_transport_pair()
    guard = Guard()
    guard.allow = False
    assert await transport.send(b"no\n", guard=guard) is False
    assert await transport.send(b"yes\n", guard=Guard()) is True
    await transport.end_input()
    assert await peer.receive_line() == b"yes"
    with pytest.raises(InputClosed):
        await transport.send(b"late\n")
    await transport.aclose()


BAD_STARTS: list[tuple[list[str], dict[str, Any] | None, str]] = [
    ([sys.executable, "-c", "pass\0"], None, "null"),
    ([sys.executable, "-c", "pass"], {"A": "x\0y"}, "null"),
    ([sys.executable, "-c", "pass"], {"A\0": "x"}, "null|=|invalid"),
    ([sys.executable, "-c", "pass"], {"A": 1}, "int"),
]


@pytest.mark.parametrize(("argv", "env", "what"), BAD_STARTS)
async def test_bad_arguments_at_start_leak_nothing(
    argv: list[str], env: dict[str, Any] | None, what: str
) -> None:
    async with SubprocessTransport([sys.executable, "-c", "pass"]) as warm:  # lazy loop fds
        await warm.wait_exit(5)
    before = open_fds()
    with pytest.raises(TransportError, match=what):
        async with SubprocessTransport(argv, env=env):
            pass
    assert open_fds() == before


async def test_a_full_life_leaks_no_fd() -> None:
    argv = [sys.executable, "-c", "import sys; print(sys.stdin.read())"]
    async with SubprocessTransport(argv) as warm:
        await warm.end_input()
        await read_all(warm)
    before = open_fds()
    async with SubprocessTransport(argv) as t:
        await t.send(b"hi\n")
        await t.end_input()
        assert await read_all(t) == [b"hi"]
    assert open_fds() == before


BAD_CONSTRUCTIONS: list[tuple[dict[str, Any], type[Exception], str]] = [
    ({"argv": "claude --verbose"}, TypeError, "not a string"),
    ({"argv": b"claude"}, TypeError, "not a string"),
    ({"argv": []}, TypeError, "non-empty"),
    ({"argv": ["x"], "max_line_bytes": 0}, ValueError, "max_line_bytes"),
    ({"argv": ["x"], "max_line_bytes": 1.5}, TypeError, "max_line_bytes"),
    ({"argv": ["x"], "close_timeout": -1}, ValueError, "close_timeout"),
    ({"argv": ["x"], "terminate_timeout": math.nan}, ValueError, "terminate_timeout"),
    ({"argv": ["x"], "stderr_lines": -1}, ValueError, "stderr_lines"),
    ({"argv": ["x"], "env": [("A", "b")]}, TypeError, "env"),
    ({"argv": ["x"], "child": "vms"}, TransportError, "unknown child implementation"),
]


@pytest.mark.parametrize(("kwargs", "error", "what"), BAD_CONSTRUCTIONS)
def test_bad_construction_is_a_clear_error(
    kwargs: dict[str, Any], error: type[Exception], what: str
) -> None:
    make: Callable[..., object] = SubprocessTransport
    with pytest.raises(error, match=what):
        make(**kwargs)
