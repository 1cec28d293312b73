"""A session whose spill file stops accepting writes: ``python adversary_spill.py DIR BACKEND``.

Run as a child process by ``test_adversary.py`` because the failure it provokes (the file
size limit, RLIMIT_FSIZE, with SIGXFSZ ignored so writes fail with EFBIG) is process-wide,
and because the bug it exposes spins the event loop without ever yielding, which no
in-process deadline can interrupt. Prints one line: how the consumer's iteration ended.
"""

from __future__ import annotations

import resource
import signal
import sys

import anyio

from ctlwire.protocol import ControlSession, SessionClosed
from ctlwire.transport import memory_transport_pair

LIMIT = 32 * 1024


async def main(spill_dir: str) -> None:
    transport, peer = memory_transport_pair()
    got = 0
    async with ControlSession(transport, buffer_bytes=4096, spill_dir=spill_dir) as session:
        for i in range(3000):  # ~100 KiB of messages: past the budget, past the file limit
            await peer.write(b'{"type":"assistant","n":%d}\n' % i)
        await peer.exit(0)
        try:
            async for _ in session.messages():
                got += 1
        except SessionClosed as exc:
            print(f"SessionClosed after {got} messages: {exc}", flush=True)
            return
    print(f"ended cleanly after {got} messages", flush=True)


if __name__ == "__main__":
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, resource.RLIM_INFINITY))
    anyio.run(main, sys.argv[1], backend=sys.argv[2])
