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
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .errors import TransportError

SERVER_MODULE = "_supervisor_server"
HEADER_BYTES = 4
# A working directory to send: O_PATH (Linux) needs no read permission, as chdir needs none.
DIRECTORY = getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_PATH", os.O_RDONLY)
SEND_TIMEOUT = 10.0  # a server that takes no spawn for this long is replaced

# The command that runs a module of ours by name, in a bare interpreter.
Run = Callable[[str], list[str]]


class ServerUnavailable(TransportError):
    """No supervisor server could take the spawn (it would not start, or not answer)."""


class ServerLink:
    """This process's link to its server, shared by every thread and event loop."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pid: int | None = None
        self.control: socket.socket | None = None
        self.identity: tuple[object, ...] = ()  # who we were when the server started
        self.channels: set[int] = set()  # the owner's ends of live sessions

    def hold(self) -> None:
        """Before a fork: no spawn half sent, no channel unknown to `forget`."""
        self.lock.acquire()

    def let_be(self) -> None:
        """After a fork, in the parent."""
        self.lock.release()

    def forget(self) -> None:
        """In a child forked without exec: not the owner; the server and sessions are
        not its, and it must not keep them from seeing their owner's end."""
        self.lock = threading.Lock()
        for fd in self.channels:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.channels.clear()
        self.drop()

    def drop(self) -> None:
        """Start a new server at the next spawn; this one ends once its sessions have."""
        if self.control is not None:
            with contextlib.suppress(OSError):
                self.control.close()
        self.control = self.pid = None

    def running(self, run: Run) -> socket.socket:
        """The server's socket (hold `lock`): started now if there is none, or if this
        process has since changed who it is (a server started as root must not spawn
        for an owner that dropped its privileges)."""
        if self.control is not None and self.identity != identity():
            self.drop()
        if self.control is None:
            self.identity = identity()
            try:
                self.pid, self.control = start_server(run)
            except OSError as exc:
                raise ServerUnavailable(f"the supervisor server did not start: {exc}") from exc
        return self.control

    def send(self, run: Run, message: bytes, fds: Sequence[int]) -> int:
        """Send one spawn, to a new server if this one is gone (once); the new session's
        channel. The lock is also held across every fork of this process (see
        `register_at_fork` below), so no child can inherit a channel it does not know."""
        with self.lock:
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            with ours, theirs:
                passed = array.array("i", [*fds, theirs.fileno()])
                for attempt in range(2):
                    control = self.running(run)
                    try:
                        sent = control.sendmsg(
                            [message], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, passed)]
                        )
                        control.sendall(message[sent:])
                        break
                    except OSError as exc:
                        self.drop()
                        if attempt:
                            raise ServerUnavailable(
                                f"the supervisor server took no spawn: {exc}"
                            ) from exc
                channel = ours.detach()
            self.channels.add(channel)
        os.set_blocking(channel, False)
        return channel


def identity() -> tuple[object, ...]:
    """Who this process is, as far as its children's rights go."""
    ids = (os.getuid(), os.geteuid(), os.getgid(), os.getegid())
    return (*ids, tuple(sorted(os.getgroups())))


link = ServerLink()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=link.hold, after_in_parent=link.let_be, after_in_child=link.forget)


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
                stderr=subprocess.DEVNULL,  # never holds the owner's open: a capture ends
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
            raise OSError(f"its first process exited with {launcher.returncode}")
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
    os.fsencode(decoded)  # UnicodeEncodeError (a ValueError) for a lone surrogate
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
    environ = env if env is not None else environment()
    request: dict[str, Any] = {
        "argv": [text(arg, "argv") for arg in argv],
        "env": {name(k): text(v, "env") for k, v in environ.items()},
        "grace": grace,
        "tree": tree,
        "inherit": inheritance(),
    }
    payload = json.dumps(request).encode()
    # The directory itself, not its name: what a relative or since-deleted one means to
    # us now (a child started here would run there), not to the server.
    where = os.open(text(cwd, "cwd") if cwd is not None else ".", DIRECTORY)
    try:
        return link.send(run, len(payload).to_bytes(HEADER_BYTES, "big") + payload, (*stdio, where))
    finally:
        os.close(where)


def environment() -> Mapping[str, str]:
    """The environment a direct child would get: the C library's, which ``os.putenv``
    and C code change without ``os.environ`` knowing (Linux); elsewhere ``os.environ``."""
    if not sys.platform.startswith("linux"):
        return os.environ
    try:
        import ctypes

        entries = ctypes.POINTER(ctypes.c_char_p).in_dll(ctypes.CDLL(None), "environ")
    except (OSError, ValueError, AttributeError, ImportError):
        return os.environ
    found: dict[str, str] = {}
    index = 0
    while (entry := entries[index]) is not None:
        key, equals, value = entry.partition(b"=")
        if equals:
            found.setdefault(os.fsdecode(key), os.fsdecode(value))
        index += 1
    return found


def name(key: object) -> str:
    """An environment variable's name, as execve takes it."""
    decoded = text(key, "env")
    if not decoded or "=" in decoded:
        raise ValueError(f"illegal environment variable name {decoded!r}")
    return decoded


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
    with contextlib.suppress(OSError), open("/proc/self/oom_score_adj") as adjust:
        attributes["oom_score_adj"] = adjust.read().strip()
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


def drop_server() -> None:
    """The server did not answer: the next spawn starts a new one."""
    with link.lock:
        link.drop()


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
