"""The owner's side of the supervisor server: start it once, send it spawns.

One server (``_supervisor_server``) per Python process, started by the first contained
session on the raw-pipes path and ending with the process (EOF on its socket); every
later session costs a fork of it instead of a fresh interpreter. The session is then a
`ServedChild` (``_child_served``), watched through the channel this returns.
"""

from __future__ import annotations

import array
import contextlib
import functools
import json
import os
import socket
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

SERVER_MODULE = "_supervisor_server"
HEADER_BYTES = 4
SEND_TIMEOUT = 10.0  # a server that takes no spawn for this long is replaced

# The command that runs a module of ours by name, in a bare interpreter.
Run = Callable[[str], list[str]]


class ServerLink:
    """This process's link to its server, shared by every thread and event loop."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pid: int | None = None
        self.control: socket.socket | None = None
        self.channels: set[int] = set()  # the owner's ends of live sessions

    def forget(self) -> None:
        """In a child forked without exec: not the owner; the server and sessions are
        not its, and it must not keep them from seeing their owner's end."""
        self.lock = threading.Lock()
        for fd in self.channels:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.channels.clear()
        if self.control is not None:
            with contextlib.suppress(OSError):
                self.control.close()
        self.control = self.pid = None

    def running(self, run: Run) -> socket.socket:
        """The server's socket, the server started now if need be (hold `lock`)."""
        if self.control is None:
            self.pid, self.control = start_server(run)
        return self.control

    def send(self, run: Run, message: bytes, fds: Sequence[int]) -> None:
        """Send one spawn, to a new server if this one is gone (once)."""
        with self.lock:
            for attempt in range(2):
                control = self.running(run)
                try:
                    sent = control.sendmsg(
                        [message], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))]
                    )
                    control.sendall(message[sent:])
                    return
                except OSError:
                    control.close()  # it ends once its sessions have ended
                    self.control = self.pid = None
                    if attempt:
                        raise


link = ServerLink()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=link.forget)


def server_pid(run: Run) -> int | None:
    """The pid of this process's supervisor server, started now if need be."""
    with link.lock:
        link.running(run)
        return link.pid


def start_server(run: Run) -> tuple[int, socket.socket]:
    """Start a server; its pid and socket. It forks away from its first process, which is
    reaped here: it is never our child to wait for."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with theirs:
            launcher = subprocess.Popen(
                [*run(SERVER_MODULE), str(theirs.fileno())],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),),
                process_group=0,  # no Ctrl-C from a terminal; only EOF from us ends it
            )
        try:
            launcher.wait(SEND_TIMEOUT)
        except subprocess.TimeoutExpired:
            launcher.kill()
            launcher.wait()
        ours.settimeout(SEND_TIMEOUT)
        hello = ours.recv(32)
        if not hello.strip().isdigit():
            raise OSError(f"the supervisor server did not start (exit code {launcher.returncode})")
        return int(hello), ours
    except OSError:
        ours.close()
        raise


def text(value: object, what: str) -> str:
    """``value`` as Popen would take it, or the TypeError/ValueError Popen would raise."""
    if not isinstance(value, str | bytes | os.PathLike):
        raise TypeError(f"{what} must be str, bytes or os.PathLike, not {type(value).__name__}")
    decoded = os.fsdecode(value)
    if "\0" in decoded:
        raise ValueError(f"embedded null byte in {what}")
    return decoded


def request_spawn(
    run: Run,
    argv: Sequence[str],
    *,
    cwd: str | os.PathLike[str] | None,
    env: Mapping[str, str] | None,
    grace: float,
    tree: bool,
    stdio: tuple[int, int, int],
) -> int:
    """Ask this process's server to spawn ``argv`` contained, with ``stdio`` as its stdin,
    stdout and stderr; the session's channel (non-blocking). Raises what Popen would for
    bad arguments, OSError if no server takes it."""
    request: dict[str, Any] = {
        "argv": [text(arg, "argv") for arg in argv],
        "cwd": text(cwd, "cwd") if cwd is not None else owner_cwd(),
        "env": {
            text(k, "env"): text(v, "env")
            for k, v in (env if env is not None else os.environ).items()
        },
        "grace": grace,
        "tree": tree,
        "inherit": inheritance(),
    }
    payload = json.dumps(request).encode()
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with ours, theirs:
        link.send(
            run, len(payload).to_bytes(HEADER_BYTES, "big") + payload, [*stdio, theirs.fileno()]
        )
        fd = ours.detach()
    os.set_blocking(fd, False)
    link.channels.add(fd)
    return fd


def inheritance() -> dict[str, Any]:
    """What a direct child would inherit from this process now and a fork of the server
    would not (it has what we had when it started): CPU affinity, niceness, resource
    limits, and the umask where it can be read without changing it (Linux)."""
    attributes: dict[str, Any] = {}
    if hasattr(os, "sched_getaffinity"):
        attributes["affinity"] = sorted(os.sched_getaffinity(0))
    with contextlib.suppress(OSError, AttributeError):
        attributes["nice"] = os.getpriority(os.PRIO_PROCESS, 0)
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status", "rb") as status:
        for line in status:
            if line.startswith(b"Umask:"):
                attributes["umask"] = int(line.split()[1], 8)
                break
    with contextlib.suppress(ImportError):
        import resource

        attributes["rlimits"] = {
            name: resource.getrlimit(getattr(resource, name)) for name in _limits()
        }
    return attributes


@functools.cache
def _limits() -> list[str]:
    import resource

    return [name for name in dir(resource) if name.startswith("RLIMIT_")]


def let_go(channel: int) -> None:
    """Tell the server, by EOF, that we are done with a session: once its supervisor has
    ended, it reaps it and closes its end (EOF here)."""
    sock = socket.socket(fileno=channel)
    try:
        sock.shutdown(socket.SHUT_WR)
    finally:
        sock.detach()


def release(channel: int) -> None:
    """Close a session's channel: its supervisor ends whatever is left of the tree."""
    link.channels.discard(channel)
    os.close(channel)


def owner_cwd() -> str | None:
    """The directory a direct spawn would run in: ours now, not the server's."""
    try:
        return os.getcwd()
    except OSError:
        return None
