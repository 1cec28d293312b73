"""The official SDK's ``query()`` on its own transport and on `CtlwireTransport`.

Both contenders run the same consumer on the same emitter; the SDK's dispatcher and its
typed message parsing are in both, so the figure shows what the transport swap changes
end to end, not the transport alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import anyio


async def query_flood(cli: str, n: int, ours: bool) -> float:
    """Seconds from the first flood message to the result, through ``query()``."""
    from claude_agent_sdk import AssistantMessage, ClaudeAgentOptions, ResultMessage, query

    from ctlwire.sdk import CtlwireTransport

    options = ClaudeAgentOptions(
        cli_path=cli, env={"BENCH_MODE": "sdkflood", "BENCH_N": str(n)}, max_buffer_size=256 << 20
    )
    transport = CtlwireTransport("go", options) if ours else None
    count = 0
    started = elapsed = 0.0
    async for message in query(prompt="go", options=options, transport=transport):
        if isinstance(message, AssistantMessage):
            if count == 0:
                started = time.perf_counter()
            count += 1
        elif isinstance(message, ResultMessage):
            elapsed = time.perf_counter() - started
    assert count == n, count
    return elapsed


def contenders(cli: str, n: int, backend: str) -> dict[str, Callable[[], float]]:
    def run(ours: bool) -> Callable[[], float]:
        return lambda: float(anyio.run(query_flood, cli, n, ours, backend=backend))

    return {"ctlwire": run(True), "reference": run(False)}


def figures(runs: dict[str, float], n: int) -> dict[str, Any]:
    """Messages per second for each contender (the first message starts the clock)."""
    return {name: (n - 1) / seconds for name, seconds in runs.items()}
