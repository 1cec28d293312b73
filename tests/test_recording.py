"""The recorder logs what crossed the pipe: each line written once, after its write."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import anyio
import pytest
from helpers import force_child, read_all

from ctlwire.fixtures import RecordingTransport, read_log
from ctlwire.transport import SubprocessTransport
from ctlwire.transport._child import KINDS

pytestmark = pytest.mark.anyio

# Reads nothing until SIGUSR1, then echoes the number of each line it reads.
HELD_READER = (
    "import json, signal, sys\n"
    "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})\n"
    "print('ready', flush=True)\n"
    "signal.sigwait({signal.SIGUSR1})\n"
    "for line in sys.stdin.buffer:\n"
    "    print(json.loads(line)['n'], flush=True)\n"
)


@pytest.fixture(autouse=True, params=KINDS)
def child_kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    return force_child(str(request.param), monkeypatch)


async def test_a_full_pipe_logs_each_written_line_once_in_order(tmp_path: Path) -> None:
    log = tmp_path / "session.jsonl"
    inner = SubprocessTransport([sys.executable, "-c", HELD_READER], close_timeout=2)
    pad = "x" * 3000  # under PIPE_BUF: a write takes a whole line or waits for room
    sent: list[int] = []
    async with RecordingTransport(inner, log) as t:
        assert await t.receive_lines() == [b"ready"]

        async def sender(n: int) -> None:
            assert await t.send(json.dumps({"type": "user", "n": n, "pad": pad}).encode() + b"\n")
            sent.append(n)

        async with anyio.create_task_group() as tg:
            n = 0
            with anyio.fail_after(20):
                while True:  # until a send waits for room: the pipe is full
                    tg.start_soon(sender, n)
                    await anyio.wait_all_tasks_blocked()
                    if n not in sent:
                        break
                    n += 1
            for extra in range(n + 1, n + 4):  # and a few queued behind it
                tg.start_soon(sender, extra)
                await anyio.wait_all_tasks_blocked()
            assert inner.pid is not None
            os.kill(inner.pid, signal.SIGUSR1)
        await t.end_input()
        echoed = [int(line) for line in await read_all(t)]
    assert n >= 1 and echoed == sent == list(range(n + 4))
    logged = [r.frame["n"] for r in read_log(log).records if r.src == "sdk" and r.frame]
    assert logged == sent  # each line once, in the order it went out
