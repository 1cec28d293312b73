"""ctlwire against an older copy of itself, side by side in one run.

``python -m bench.against DIR [--rounds R]``: DIR holds the older ctlwire, installed with
``pip install --no-deps --target DIR <checkout>``. Two warm worker processes, one per
copy, run the same harness (this folder's `ctlwire_run`, emitter and one-CPU placement);
the rounds alternate them with the reference SDK and the bare reader. Each row gives
frames or trips per second (median) and the CPU time the ctlwire process spent per
frame or trip, which machine load disturbs far less than wall time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import IO

from bench.__main__ import measure

WORKER = """
import json, os, resource, sys
older, root = sys.argv[1], sys.argv[2]
if older:
    sys.path.insert(0, older)
sys.path.insert(0, root)
import anyio
import ctlwire
from bench.__main__ import bare_run, ctlwire_run, reference_run, wrapper
print(json.dumps(ctlwire.__file__), flush=True)
cli = wrapper()
for line in sys.stdin:
    who, mode, backend, n, cpu = line.split()
    allowed = os.sched_getaffinity(0)
    if cpu == "one":
        os.sched_setaffinity(0, {max(allowed)})
    before = resource.getrusage(resource.RUSAGE_SELF)
    try:
        if who == "ctlwire":
            seconds = anyio.run(ctlwire_run, cli, mode, int(n), backend=backend)
        elif who == "reference":
            seconds = anyio.run(reference_run, cli, mode, int(n), backend="asyncio")
        else:
            seconds = bare_run(cli, mode, int(n))
    finally:
        os.sched_setaffinity(0, allowed)
    after = resource.getrusage(resource.RUSAGE_SELF)
    used = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    print(json.dumps([seconds, used]), flush=True)
"""

FIGURES = [
    ("flood", "asyncio", 100_000, "free"),
    ("flood", "trio", 100_000, "free"),
    ("hooks", "asyncio", 5_000, "one"),
    ("hooks", "trio", 5_000, "one"),
]


class Worker:
    """One warm interpreter running the harness on one copy of ctlwire."""

    def __init__(self, older: str) -> None:
        root = str(Path(__file__).parents[1])
        self.process = subprocess.Popen(
            [sys.executable, "-c", WORKER, older, root],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.stdin: IO[str] = self.process.stdin  # type: ignore[assignment]
        self.stdout: IO[str] = self.process.stdout  # type: ignore[assignment]
        self.location = json.loads(self.stdout.readline())
        self.cpu: list[float] = []

    def run(self, who: str, mode: str, backend: str, n: int, cpu: str) -> float:
        self.stdin.write(f"{who} {mode} {backend} {n} {cpu}\n")
        self.stdin.flush()
        seconds, used = json.loads(self.stdout.readline())
        if who == "ctlwire":
            self.cpu.append(used)
        return float(seconds)

    def close(self) -> None:
        self.stdin.close()
        self.process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.against")
    parser.add_argument("older", help="a folder holding the older ctlwire package")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    older, newer = Worker(args.older), Worker("")
    print(f"older: {older.location}\nnewer: {newer.location}", flush=True)
    try:
        for mode, backend, n, cpu in FIGURES:
            older.cpu.clear()
            newer.cpu.clear()
            item = (mode, backend, n, cpu)
            runs: dict[str, Callable[[], float]] = {
                "older": partial(older.run, "ctlwire", *item),
                "newer": partial(newer.run, "ctlwire", *item),
                "reference": partial(newer.run, "reference", *item),
                "limit": partial(newer.run, "limit", *item),
            }
            rate = {k: n / v for k, v in measure(runs, args.rounds).items()}
            # The first run of each is measure's unmeasured warm-up.
            us = {
                w: 1e6 * statistics.median(x.cpu[1:]) / n for w, x in (("o", older), ("n", newer))
            }
            print(
                f"{mode} ({backend}, {cpu} CPU): older {rate['older']:,.0f}/s "
                f"({rate['older'] / rate['reference']:.2f}x ref, "
                f"{rate['older'] / rate['limit']:.2f} limit), newer {rate['newer']:,.0f}/s "
                f"({rate['newer'] / rate['reference']:.2f}x ref, "
                f"{rate['newer'] / rate['limit']:.2f} limit); "
                f"CPU per item {us['o']:.2f} vs {us['n']:.2f} us",
                flush=True,
            )
    finally:
        older.close()
        newer.close()


if __name__ == "__main__":
    main()
