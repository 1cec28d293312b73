"""SubprocessTransport against real child processes: the contract every child-process
implementation (linux, posix, portable) keeps, each on asyncio and trio."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest
from helpers import force_child, peer_argv, read_all

from ctlwire.transport import LineTooLong, ProcessExited, SubprocessTransport, TransportError
from ctlwire.transport._child import KINDS
from ctlwire.transport._stream import Life

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True, params=KINDS)
def child_kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test here runs on each implementation this interpreter can run, forced
    through ``CTLWIRE_CHILD`` (inherited by the fresh interpreters some tests start)."""
    return force_child(str(request.param), monkeypatch)


def group_gone(pgid: int, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.01)
    return False


async def test_echo_round_trip_and_exit_code(child_kind: str) -> None:
    argv = [sys.executable, "-c", "import sys; [print(l.strip()) for l in sys.stdin]; sys.exit(4)"]
    async with SubprocessTransport(argv) as transport:
        assert transport.kind == child_kind
        assert transport.pid is not None
        await transport.send(b'{"n": 1}\n{"n": 2}\n')
        await transport.end_input()
        await transport.end_input()  # idempotent
        assert await read_all(transport) == [b'{"n": 1}', b'{"n": 2}']
        assert await transport.wait_exit(5) == 4
    assert transport.returncode == 4


async def test_stderr_lines_with_a_raising_callback() -> None:
    seen: list[str] = []

    def on_stderr(line: str) -> None:
        seen.append(line)
        raise RuntimeError("callback bug")

    code = "import sys\nfor i in range(300): print('err', i, file=sys.stderr)\nprint('{}')"
    async with SubprocessTransport([sys.executable, "-c", code], on_stderr=on_stderr) as t:
        assert await read_all(t) == [b"{}"]
        await t.wait_exit(5)
        assert seen == [f"err {i}" for i in range(300)]
        assert t.stderr_tail == [f"err {i}" for i in range(250, 300)]


async def test_chatty_stderr_never_blocks_the_child() -> None:
    async with SubprocessTransport(peer_argv("stderr_flood", "20000")) as t:
        assert (await t.receive_lines())[0].startswith(b'{"type": "assistant"')


async def test_a_read_while_another_task_closes_is_the_end_of_stream() -> None:
    """Not the backend's "another task is reading" error: the close drains stdout."""
    t = SubprocessTransport(["sh", "-c", "echo ready; exec sleep 30"], close_timeout=0.5)
    await t.start()
    assert await t.receive_lines() == [b"ready"]
    async with anyio.create_task_group() as tg:
        tg.start_soon(t.aclose)
        with anyio.fail_after(5):
            while t._state.life is not Life.CLOSING:  # noqa: ASYNC110 - polling, with a deadline
                await anyio.sleep(0.001)
        with pytest.raises(anyio.EndOfStream):
            await t.receive_lines()


async def test_child_ignoring_sigterm_is_killed_within_bounds() -> None:
    t = SubprocessTransport(peer_argv("ignore_term"), close_timeout=0.2, terminate_timeout=0.3)
    await t.start()
    await t.receive_lines()  # it is up and has installed its handler
    started = time.monotonic()
    await t.aclose()
    assert time.monotonic() - started < 3
    assert t.returncode == -9


async def test_aclose_from_another_task_than_the_one_that_started() -> None:
    t = SubprocessTransport(peer_argv("echo"))
    done = anyio.Event()

    async def opener() -> None:
        await t.__aenter__()
        done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(opener)
        await done.wait()
    async with anyio.create_task_group() as tg:
        tg.start_soon(t.aclose)
        tg.start_soon(t.aclose)  # concurrent and idempotent
    await t.aclose()
    assert t.returncode == 0


async def test_concurrent_writers_never_interleave_lines_bigger_than_the_pipe() -> None:
    # Each line is several pipe buffers long, so writers wait part-way through lines
    # while others queue behind them; small lines take the lock-free path in between.
    code = (
        "import sys\n"
        "for line in sys.stdin.buffer:\n"
        "    body = line.rstrip(b'\\n')\n"
        "    print(len(body), sorted(set(body.decode())), flush=True)\n"
    )
    sizes = {"a": 300_000, "b": 5, "c": 200_000, "d": 7}
    async with SubprocessTransport([sys.executable, "-c", code]) as t:

        async def writer(char: str) -> None:
            for _ in range(3):
                await t.send(char.encode() * sizes[char] + b"\n")

        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                for char in sizes:
                    tg.start_soon(writer, char)
            await t.end_input()
            lines = await read_all(t)
    assert sorted(lines) == sorted(
        f"{size} ['{char}']".encode() for char, size in sizes.items() for _ in range(3)
    )


async def test_write_to_a_dead_child_is_a_typed_error() -> None:
    code = "import sys; print('bye', file=sys.stderr); sys.exit(9)"
    async with SubprocessTransport([sys.executable, "-c", code]) as t:
        await t.wait_exit(5)
        with pytest.raises(ProcessExited) as info:
            await t.send(b"x" * 200_000 + b"\n")
        assert info.value.returncode == 9
        assert info.value.stderr_tail == ("bye",)
        assert "exited with code 9" in str(info.value) and "bye" in str(info.value)


async def test_line_over_the_limit_is_a_typed_error() -> None:
    async with SubprocessTransport(peer_argv("overlong", "5000"), max_line_bytes=1000) as t:
        assert len(await t.receive_lines()) == 1
        with pytest.raises(LineTooLong) as info:
            await t.receive_lines()
        assert info.value.limit == 1000 and info.value.size > 1000


async def test_grandchild_holding_stdout_does_not_hang_us() -> None:
    async with SubprocessTransport(peer_argv("grandchild")) as t:
        assert await read_all(t) == [b'{"type": "assistant", "n": 1}']
        assert await t.wait_exit(5) == 0
    # The whole process group went down with the transport, grandchild included
    # (init reaps it shortly after, so poll with a deadline).
    assert group_gone(t.pid or 0)


async def test_never_a_shell_and_env_is_exactly_what_was_given(tmp_path: object) -> None:
    argv = peer_argv("env_dump", "$(touch pwned)", "; rm -rf /", "`id`")
    async with SubprocessTransport(argv, cwd=str(tmp_path), env={"ONLY": "this"}) as t:
        report = (await t.receive_lines())[0]
    assert b'"argv": ["$(touch pwned)", "; rm -rf /", "`id`"]' in report
    assert b'"env": {"ONLY": "this"' in report or b'"env": {' in report
    import json

    data = json.loads(report)
    assert set(data["env"]) <= {"ONLY", "LC_CTYPE"}  # CPython may add LC_CTYPE coercion
    assert data["cwd"] == str(tmp_path)
    assert not (Path(str(tmp_path)) / "pwned").exists()
    with pytest.raises(TypeError):
        SubprocessTransport("claude --verbose")  # type: ignore[arg-type]


async def test_missing_executable_is_a_transport_error() -> None:
    with pytest.raises(TransportError, match="no-such-cli"):
        async with SubprocessTransport(["/nonexistent/no-such-cli"]):
            pass


CHILD = """
import anyio, sys
sys.path.insert(0, {tests!r})
from helpers import peer_argv
from ctlwire.protocol import ControlSession
from ctlwire.transport import SubprocessTransport

def status(field):
    # VmHWM is this image's own peak RSS; ru_maxrss would be inherited across fork + exec.
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024

async def main(through_session):
    base = status("VmRSS")
    argv = peer_argv("big_line", "{size}")
    async with SubprocessTransport(argv, max_line_bytes=128 << 20) as t:
        if through_session:
            async with ControlSession(t) as session:
                async for frame in session.messages():
                    assert len(frame["pad"]) > {size} - 100
                    del frame
                    break
        else:
            (line,) = await t.receive_lines()
            assert len(line) == {size}, len(line)
            del line
    print(base, status("VmHWM"))
anyio.run(main, sys.argv[2] == "session", backend=sys.argv[1])
"""


@pytest.mark.parametrize("layer", ["transport", "session"])
def test_64_mib_line_with_128_mib_limit_in_bounded_memory(layer: str) -> None:
    """Run in a fresh interpreter so that peak RSS belongs to this transfer alone."""
    size = 64 << 20
    code = CHILD.format(tests=os.path.dirname(__file__), size=size)
    for backend in ("asyncio", "trio"):
        out = subprocess.run(
            [sys.executable, "-c", code, backend, layer],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        base, peak = map(int, out.stdout.split())
        grown = peak - base
        print(f"{backend} {layer}: 64 MiB line, RSS grew {grown / 2**20:.0f} MiB")
        assert grown < 3 * size, f"{backend}: peak RSS grew {grown} bytes for a {size}-byte line"


async def test_a_second_enter_is_refused_and_leaves_the_child_running() -> None:
    async with SubprocessTransport(peer_argv("echo")) as t:
        with pytest.raises(RuntimeError, match="already started"):
            async with t:
                pass
        assert t.returncode is None
    assert t.returncode == 0
