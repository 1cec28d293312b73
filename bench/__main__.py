"""Benchmarks: ctlwire vs the reference SDK vs the practical limit, side by side in one run.

``python -m bench [--rounds R] [--flood N] [--hooks N] [--json FILE]``

Every figure is the median of R rounds; within a round the contenders alternate, so
machine noise hits them alike. Big-line and cancel-storm figures come from fresh child
processes, so that peak RSS belongs to the measured transfer alone.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import msgspec

from bench import sdk_swap
from ctlwire.protocol import ControlSession, HookMatcher, RequestContext
from ctlwire.transport import SubprocessTransport

EMITTER = Path(__file__).with_name("emitter.py")
USER = {
    "type": "user",
    "message": {"role": "user", "content": "go"},
    "parent_tool_use_id": None,
    "session_id": "default",
}
INIT = {"type": "control_request", "request_id": "req_1", "request": {"subtype": "initialize"}}


def wrapper() -> str:
    """One executable path for every contender (the reference only takes a path)."""
    folder = Path(tempfile.mkdtemp(prefix="ctlwire-bench-"))
    path = folder / "emitter"
    path.write_text(f"#!/bin/sh\nexec {sys.executable} {EMITTER}\n")
    path.chmod(0o755)
    return str(path)


def bench_env(mode: str, n: int) -> dict[str, str]:
    return {**os.environ, "BENCH_MODE": mode, "BENCH_N": str(n)}


async def count_until_result(messages: AsyncIterator[dict[str, Any]]) -> int:
    """What every contender's consumer does: count messages until the ``result``."""
    count = 0
    async for message in messages:
        if message.get("type") == "result":
            break
        count += 1
    return count


# -- ctlwire ------------------------------------------------------------------------------


async def ctlwire_run(cli: str, mode: str, n: int, plain: bool = False) -> float:
    """Seconds from the user message to the result, through ControlSession (``plain``:
    handlers on a task per request instead of the reused tasks of `TaskPool`)."""

    async def on_hook(inp: dict[str, Any], tool_use_id: str | None, ctx: RequestContext) -> Any:
        if mode == "storm" and inp["n"] % 2 == 0:
            await anyio.sleep_forever()
        return {"continue": True}

    hooks = {"PreToolUse": [HookMatcher(None, [on_hook])]}
    async with (
        SubprocessTransport([cli], env=bench_env(mode, n), max_line_bytes=256 << 20) as t,
        ControlSession(t, hooks=hooks) as session,
    ):
        if plain:
            from bench.plain_runner import TaskGroupRunner

            runner = TaskGroupRunner()
            await runner.ready()
            session._tasks = runner  # type: ignore[assignment]
        await session.initialize()
        started = time.perf_counter()
        await session.send(USER)
        count = await count_until_result(session.messages())
        elapsed = time.perf_counter() - started
        await session.end_input()
    if mode == "flood":
        assert count == n, count
    return elapsed


async def backlog_run(cli: str, n: int) -> dict[str, float]:
    """The CLI writes ``n`` messages and then a hook while nobody reads messages: the
    hook's answer latency (seen by the CLI), then every message, checked in order."""
    served = anyio.Event()

    async def on_hook(inp: dict[str, Any], tool_use_id: str | None, ctx: RequestContext) -> Any:
        served.set()
        return {"continue": True}

    hooks = {"PreToolUse": [HookMatcher(None, [on_hook])]}
    async with (
        SubprocessTransport([cli], env=bench_env("backlog", n)) as t,
        ControlSession(t, hooks=hooks) as session,
    ):
        await session.initialize()
        started = time.perf_counter()
        await session.send(USER)
        with anyio.fail_after(120):
            await served.wait()  # not one message has been read so far
        expected = 0
        async for message in session.messages():
            if message.get("type") == "result":
                break
            assert message["n"] == expected, (message["n"], expected)
            expected += 1
        elapsed = time.perf_counter() - started
        assert expected == n, expected
        peak_memory = session._buffer.peak_memory_bytes
        await session.end_input()
    return {
        "seconds": elapsed,
        "hook_latency": message["hook_latency"],
        "peak_buffer_memory": peak_memory,
    }


# -- the reference SDK --------------------------------------------------------------------


async def reference_run(cli: str, mode: str, n: int) -> float:
    from claude_agent_sdk import ClaudeAgentOptions
    from claude_agent_sdk._internal.query import Query
    from claude_agent_sdk._internal.transport.subprocess_cli import SubprocessCLITransport

    async def on_hook(inp: Any, tool_use_id: Any, context: Any) -> Any:
        return {"continue": True}

    async def no_prompt() -> Any:
        return
        yield

    options = ClaudeAgentOptions(
        cli_path=cli, env={"BENCH_MODE": mode, "BENCH_N": str(n)}, max_buffer_size=256 << 20
    )
    transport = SubprocessCLITransport(prompt=no_prompt(), options=options)
    await transport.connect()
    query = Query(
        transport,
        is_streaming_mode=True,
        hooks={"PreToolUse": [{"matcher": None, "hooks": [on_hook]}]},
    )
    try:
        await query.start()
        await query.initialize()
        started = time.perf_counter()
        await transport.write(json.dumps(USER) + "\n")
        count = await count_until_result(query.receive_messages())
        elapsed = time.perf_counter() - started
    finally:
        await query.close()
    if mode == "flood":
        assert count == n, count
    return elapsed


# -- the practical limit: blocking reads, split, msgspec -------------------------------------


def bare_run(cli: str, mode: str, n: int) -> float:
    decode = msgspec.json.Decoder().decode
    encode = msgspec.json.Encoder().encode
    child = subprocess.Popen(
        [cli], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=bench_env(mode, n)
    )
    assert child.stdin is not None and child.stdout is not None
    fd_in, fd_out = child.stdin.fileno(), child.stdout.fileno()
    os.write(fd_in, encode(INIT) + b"\n")
    pending = b""

    def frames() -> Any:
        nonlocal pending
        while True:
            data = os.read(fd_out, 1 << 20)
            if not data:
                return
            *lines, pending = (pending + data).split(b"\n")
            for line in lines:
                if line:
                    yield decode(line)

    stream = frames()
    next(stream)  # the initialize answer
    started = time.perf_counter()
    os.write(fd_in, encode(USER) + b"\n")
    count = 0
    for frame in stream:
        kind = frame.get("type")
        if kind == "result":
            break
        if kind == "control_request":
            answer = {
                "type": "control_response",
                "response": {
                    "subtype": "success",
                    "request_id": frame["request_id"],
                    "response": {"continue": True},
                },
            }
            os.write(fd_in, encode(answer) + b"\n")
        else:
            count += 1
    elapsed = time.perf_counter() - started
    child.stdin.close()
    child.wait()
    return elapsed


# -- where the processes run ----------------------------------------------------------------


@contextlib.contextmanager
def one_cpu() -> Iterator[None]:
    """Run this process, and the children it starts meanwhile, on one CPU.

    A hook round trip wakes each process once. Across cores that is an inter-processor
    wake-up, which on this kind of machine (a VM) costs more than either side's work, is
    the same for every contender, and hides what the figure is about: the cost of the
    round trip in the library. On one CPU a wake-up is a context switch.
    """
    allowed = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {max(allowed)})
    try:
        yield
    finally:
        os.sched_setaffinity(0, allowed)


def pipe_ping_pong(n: int) -> float:
    """Seconds per round trip of one byte between two processes blocked in read()."""
    down_r, down_w = os.pipe()
    up_r, up_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        for _ in range(n):
            os.read(down_r, 1)
            os.write(up_w, b"x")
        os._exit(0)
    started = time.perf_counter()
    for _ in range(n):
        os.write(down_w, b"x")
        os.read(up_r, 1)
    elapsed = time.perf_counter() - started
    os.waitpid(pid, 0)
    for fd in (down_r, down_w, up_r, up_w):
        os.close(fd)
    return elapsed / n


# -- running ------------------------------------------------------------------------------


def on_backend(fn: Callable[..., Any], backend: str, *args: Any) -> float:
    return float(anyio.run(fn, *args, backend=backend))


def contenders(cli: str, mode: str, n: int, backend: str) -> dict[str, Callable[[], float]]:
    return {
        "ctlwire": lambda: on_backend(ctlwire_run, backend, cli, mode, n),
        "reference": lambda: on_backend(reference_run, "asyncio", cli, mode, n),
        "limit": lambda: bare_run(cli, mode, n),
    }


def measure(runs: dict[str, Callable[[], float]], rounds: int) -> dict[str, float]:
    """Median seconds per contender; one unmeasured run of each first (caches, pages,
    lazily imported modules)."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for run in runs.values():
        run()
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:  # rotate the order
            times[name].append(runs[name]())
    return {name: statistics.median(values) for name, values in times.items()}


def child_measure(cli: str, mode: str, n: int, backend: str) -> dict[str, float]:
    """A fresh interpreter runs one ctlwire transfer; returns seconds and RSS figures."""
    root = str(Path(__file__).parents[1])
    call = (
        f"backlog_run, {cli!r}, {n}"
        if mode == "backlog"
        else f"ctlwire_run, {cli!r}, {mode!r}, {n}"
    )
    code = f"""
import json, sys, anyio
sys.path.insert(0, {root!r})
from bench.__main__ import backlog_run, ctlwire_run, proc_status
base = proc_status("VmRSS")
result = anyio.run({call}, backend={backend!r})
peak = proc_status("VmHWM")
figures = result if isinstance(result, dict) else {{"seconds": result}}
print(json.dumps({{**figures, "rss_growth": peak - base, "rss": peak}}))
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300
    )
    return dict(json.loads(out.stdout))


def proc_status(field: str) -> int:
    """A size from /proc/self/status, in bytes. VmHWM is this image's own peak RSS;
    ru_maxrss is not, since Linux carries it across fork and exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise LookupError(field)


def import_time(module: str, rounds: int) -> float:
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    values = [
        float(
            subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, check=True
            ).stdout
        )
        for _ in range(rounds)
    ]
    return statistics.median(values)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--flood", type=int, default=100_000)
    parser.add_argument("--hooks", type=int, default=5_000)
    parser.add_argument("--storm", type=int, default=10_000)
    parser.add_argument("--backlog", type=int, default=500_000)
    parser.add_argument("--big", type=int, nargs="*", default=[1, 4, 16, 64], help="MiB")
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    cli = wrapper()
    rows: list[dict[str, Any]] = []

    def row(
        figure: str,
        unit: str,
        ours: float,
        ref: float | None = None,
        limit: float | None = None,
        *,
        target: str = "",
    ) -> None:
        entry = {
            "figure": figure,
            "unit": unit,
            "ctlwire": ours,
            "reference": ref,
            "limit": limit,
            "target": target,
            "vs_reference": ours / ref if ref else None,
            "vs_limit": ours / limit if limit else None,
        }
        rows.append(entry)
        print(format_row(entry), flush=True)

    print(header(), flush=True)
    for backend in ("asyncio", "trio"):
        t = measure(contenders(cli, "flood", args.flood, backend), args.rounds)
        rate = {k: args.flood / v for k, v in t.items()}
        target = ">=5x ref, >=0.6 limit" if backend == "asyncio" else ">=3x ref"
        row(
            f"flood frames/s ({backend})",
            "frames/s",
            rate["ctlwire"],
            rate["reference"],
            rate["limit"],
            target=target,
        )
    for backend in ("asyncio", "trio"):
        # The official SDK's query(): CtlwireTransport in the ctlwire column, its own in
        # the reference column; its dispatcher and parser bound both.
        rate = sdk_swap.figures(
            measure(sdk_swap.contenders(cli, args.flood, backend), args.rounds), args.flood
        )
        row(
            f"SDK query() flood msgs/s ({backend})",
            "msgs/s",
            rate["ctlwire"],
            rate["reference"],
            target="no loss",
        )
    for backend, placement in (("asyncio", "one CPU"), ("trio", "one CPU"), ("asyncio", "free")):
        runs = contenders(cli, "hooks", args.hooks, backend)
        # What the reused handler tasks buy: the same run with a task per request.
        runs["plain"] = lambda b=backend: on_backend(  # type: ignore[misc]
            ctlwire_run, b, cli, "hooks", args.hooks, True
        )
        with one_cpu() if placement == "one CPU" else contextlib.nullcontext():
            t = measure(runs, args.rounds)
        rate = {k: args.hooks / v for k, v in t.items()}
        row(
            f"hooks, task per request ({backend}, {placement})",
            "trips/s",
            rate["plain"],
            rate["reference"],
            rate["limit"],
        )
        row(
            f"hooks: TaskPool / task per request ({backend}, {placement})",
            "x",
            rate["ctlwire"] / rate["plain"],
            target=">=1.10 to keep the pool",
        )
        row(
            f"hook round trips/s ({backend}, {placement})",
            "trips/s",
            rate["ctlwire"],
            rate["reference"],
            rate["limit"],
            target=">=1.6x ref" if (backend, placement) == ("asyncio", "one CPU") else "",
        )
    for placement in ("free", "one CPU"):
        with one_cpu() if placement == "one CPU" else contextlib.nullcontext():
            seconds = statistics.median(pipe_ping_pong(20_000) for _ in range(args.rounds))
        row(f"pipe ping-pong, blocking ({placement})", "us/trip", seconds * 1e6)
    big: dict[int, dict[str, float]] = {}
    for mib in args.big:
        big[mib] = child_measure(cli, "bigline", mib << 20, "asyncio")
        row(f"big line {mib} MiB: seconds", "s", big[mib]["seconds"])
        row(
            f"big line {mib} MiB: RSS growth / line",
            "x",
            big[mib]["rss_growth"] / (mib << 20),
            target="<3x" if mib == 64 else "",
        )
        row(f"big line {mib} MiB: whole peak RSS", "MiB", big[mib]["rss"] / 2**20)
    if 16 in big and 64 in big:
        row(
            "64 MiB time / (4 x 16 MiB time)",
            "x",
            big[64]["seconds"] / (4 * big[16]["seconds"]),
            target="<=1.5",
        )
    for backend in ("asyncio", "trio"):
        backlog = child_measure(cli, "backlog", args.backlog, backend)
        row(
            f"backlog {args.backlog} unread, then a hook ({backend}): hook answered in",
            "s",
            backlog["hook_latency"],
            target="<1 s",
        )
        row(f"backlog ({backend}): all delivered in order after", "s", backlog["seconds"])
        row(
            f"backlog ({backend}): peak RSS growth",
            "MiB",
            backlog["rss_growth"] / 2**20,
            target="<64 MiB",
        )
    storm = child_measure(cli, "storm", args.storm, "asyncio")
    row(f"cancel storm {args.storm} hooks: seconds", "s", storm["seconds"])
    row(f"cancel storm {args.storm} hooks: peak RSS", "MiB", storm["rss"] / 2**20)
    row(
        "import time",
        "s",
        import_time("ctlwire.protocol", args.rounds),
        import_time("claude_agent_sdk", args.rounds),
    )
    if args.json:
        Path(args.json).write_text(json.dumps({"rounds": args.rounds, "rows": rows}, indent=2))


def header() -> str:
    return (
        f"{'figure':<40} {'ctlwire':>12} {'reference':>12} {'limit':>12} "
        f"{'vs ref':>8} {'vs limit':>8}  target"
    )


def format_row(entry: dict[str, Any]) -> str:
    def num(value: float | None) -> str:
        if value is None:
            return "-"
        return f"{value:,.0f}" if value >= 100 else f"{value:.3f}"

    def ratio(value: float | None) -> str:
        return f"{value:.2f}x" if value is not None else "-"

    return (
        f"{entry['figure']:<40} {num(entry['ctlwire']):>12} {num(entry['reference']):>12} "
        f"{num(entry['limit']):>12} {ratio(entry['vs_reference']):>8} "
        f"{ratio(entry['vs_limit']):>8}  {entry['target']}"
    )


if __name__ == "__main__":
    main()
