"""What containment costs: session starts, and many sessions at once.

``.venv/bin/python -m bench.contain`` (options: ``--starts N`` (50), ``--sessions N``
(200), ``--rounds N`` (3), ``--json FILE``) prints, side by side in one run:

- session start: the median of N starts (spawn, then the initialize answer) contained
  (the default) and with ``contain=False``, alternating, on asyncio.
- many sessions: N sessions at once (initialize, one turn, close) against a small
  stand-in CLI (`bench/tiny_cli.py`), in a fresh interpreter per run: ctlwire contained,
  ctlwire with ``contain=False`` (the code before containment) and the official SDK's
  ``query()``; the median wall time and the owner's peak RSS (``VmHWM``), and a check
  that no fd and no child process is left once all have closed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

from bench.__main__ import USER, proc_status
from ctlwire import ControlSession, SubprocessTransport
from ctlwire.transport import _served

TINY_CLI = Path(__file__).with_name("tiny_cli.py")
CONTENDERS = ("contained", "contain=False", "official query()")


def tiny_cli() -> str:
    """One executable path for every contender (the official SDK only takes a path)."""
    path = Path(tempfile.mkdtemp(prefix="ctlwire-bench-")) / "tiny-cli"
    path.write_text(f"#!/bin/sh\nexec {sys.executable} {TINY_CLI}\n")
    path.chmod(0o755)
    return str(path)


async def one_start(cli: str, contain: bool) -> float:
    started = time.perf_counter()
    async with (
        SubprocessTransport([cli], contain=contain) as t,
        ControlSession(t) as session,
    ):
        await session.initialize()
        took = time.perf_counter() - started
    return took


async def start_costs(cli: str, n: int) -> dict[str, float]:
    times: dict[bool, list[float]] = {True: [], False: []}
    for contain in (True, False):  # warm-up, unmeasured
        await one_start(cli, contain)
    for i in range(n):
        for contain in (True, False) if i % 2 else (False, True):
            times[contain].append(await one_start(cli, contain))
    return {"contained": statistics.median(times[True]), "plain": statistics.median(times[False])}


# -- many sessions, each run in a fresh interpreter ---------------------------------------


async def ctlwire_session(cli: str, contain: bool) -> None:
    async with (
        SubprocessTransport([cli], contain=contain) as t,
        ControlSession(t) as session,
    ):
        await session.initialize()
        await session.send(USER)
        async for message in session.messages():
            if message.get("type") == "result":
                break
        await session.end_input()


async def official_session(cli: str) -> None:
    from claude_agent_sdk import ClaudeAgentOptions, ResultMessage, query

    async for message in query(prompt="go", options=ClaudeAgentOptions(cli_path=cli)):
        if isinstance(message, ResultMessage):
            pass


def open_fds() -> int:
    """Open fds, less the supervisor server's socket: opened by the first contained
    session, it is kept for the process's life by design (``docs/containment.md``)."""
    control = _served.link.control
    return len(os.listdir("/proc/self/fd")) - (control is not None and control.fileno() >= 0)


def children_left() -> int:
    """1 if this process has any child left (running, or a zombie, reaped here), else 0."""
    try:
        os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        return 0
    return 1


def many(contender: str, cli: str, n: int) -> dict[str, Any]:
    """In this (fresh) interpreter: ``n`` sessions at once; wall time, peak RSS, leftovers."""
    fds = open_fds()

    async def run() -> None:
        async with anyio.create_task_group() as tg:
            for _ in range(n):
                if contender == "official query()":
                    tg.start_soon(official_session, cli)
                else:
                    tg.start_soon(ctlwire_session, cli, contender == "contained")

    started = time.perf_counter()
    anyio.run(run)
    wall = time.perf_counter() - started
    return {
        "wall": wall,
        "rss": proc_status("VmHWM"),
        "fds_left": open_fds() - fds,
        "children_left": children_left(),
    }


def many_in_child(contender: str, cli: str, n: int) -> dict[str, Any]:
    env = {**os.environ, "CLAUDE_AGENT_SDK_SKIP_VERSION_CHECK": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "bench.contain", "--child", contender, cli, str(n)],
        cwd=Path(__file__).parents[1],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode:
        raise RuntimeError(f"{contender} failed:\n{done.stderr}")
    return dict(json.loads(done.stdout.splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.contain")
    parser.add_argument("--starts", type=int, default=50)
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", default=None)
    parser.add_argument("--child", nargs=3, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        contender, cli, n = args.child
        print(json.dumps(many(contender, cli, int(n))))
        return
    cli = tiny_cli()
    starts = anyio.run(start_costs, cli, args.starts)
    print(f"session start, median of {args.starts}:")
    print(f"  contained     {starts['contained'] * 1000:7.1f} ms")
    print(f"  contain=False {starts['plain'] * 1000:7.1f} ms")
    extra = (starts["contained"] - starts["plain"]) * 1000
    print(f"  containment costs {extra:+.1f} ms per start (target: <= +30 ms)")
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in CONTENDERS}
    for r in range(args.rounds):
        for name in CONTENDERS[r % 3 :] + CONTENDERS[: r % 3]:
            runs[name].append(many_in_child(name, cli, args.sessions))
    print(f"\n{args.sessions} sessions at once, median of {args.rounds} runs:")
    print(f"  {'':18}{'wall s':>8}{'peak RSS MiB':>14}{'fds left':>10}{'children left':>15}")
    table: dict[str, dict[str, float]] = {}
    for name, results in runs.items():
        row = {
            "wall": statistics.median(r["wall"] for r in results),
            "rss": statistics.median(r["rss"] for r in results) / (1 << 20),
            "fds_left": max(r["fds_left"] for r in results),
            "children_left": max(r["children_left"] for r in results),
        }
        table[name] = row
        print(
            f"  {name:18}{row['wall']:8.2f}{row['rss']:14.1f}"
            f"{row['fds_left']:10}{row['children_left']:15}"
        )
    base, new = table["contain=False"], table["contained"]
    print(
        f"  contained / contain=False: wall {new['wall'] / base['wall']:.2f}x,"
        f" peak RSS {new['rss'] / base['rss']:.2f}x (target: <= 1.25x each)"
    )
    if args.json:
        Path(args.json).write_text(json.dumps({"starts": starts, "many": table}, indent=2))


if __name__ == "__main__":
    main()
