"""A stand-in CLI that leaves the tree agent CLIs leave: ``tree_cli.py TOKEN MODE``.

It starts a child that stays in its process group, a child that ignores SIGTERM, and a
daemon that leaves the group and session (fork, ``setsid``, fork), as browsers and MCP
servers do; every one of them carries TOKEN in its argv, so a test finds the tree by
scanning ``/proc``. Once all three are up (each reports on a pipe after setting its
signal handling) it prints one JSON line. MODE ``eof``: exit at stdin EOF; ``stay``:
ignore EOF and sleep until signalled.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

SLEEPER = "import os, sys, time; os.write(int(sys.argv[1]), b'x'); time.sleep(120)"
IGNORER = (
    "import os, signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
    " os.write(int(sys.argv[1]), b'x'); time.sleep(120)"
)


def daemon(ready: int, token: str) -> None:
    """Fork, leave the session, fork again: the grandchild is re-parented away from us."""
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            os.execv(sys.executable, [sys.executable, "-c", SLEEPER, str(ready), token])
        os._exit(0)


def main() -> None:
    token, mode = sys.argv[1], sys.argv[2]
    ready_r, ready_w = os.pipe()
    for code in (SLEEPER, IGNORER):
        subprocess.Popen([sys.executable, "-c", code, str(ready_w), token], pass_fds=[ready_w])
    os.set_inheritable(ready_w, True)
    daemon(ready_w, token)
    os.close(ready_w)
    got = b""
    while len(got) < 3:
        chunk = os.read(ready_r, 3)
        assert chunk, "a tree member died before it was up"
        got += chunk
    print(json.dumps({"type": "system", "subtype": "tree_ready", "pid": os.getpid()}), flush=True)
    sys.stdin.read()
    if mode == "stay":
        time.sleep(120)


if __name__ == "__main__":
    main()
