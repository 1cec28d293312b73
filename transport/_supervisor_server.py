"""The supervisor server: one per owning Python process, it forks each session's supervisor.

A fresh interpreter per supervisor costs ~9 ms of CPU, as much again as a small CLI; a
fork of this one costs ~0.3 ms. ``_served`` starts it on the first contained session
(``python -I -S ... FD LIMIT``, in a process group of its own) and sends it spawns on the
socket FD: a 4-byte length, a JSON object (``argv``, ``cwd``, ``env``, ``grace``,
``tree``) and four fds, the CLI's stdin, stdout and stderr and the session's channel, a
socket whose other end only the owner holds. Each spawn forks a `_supervisor.Supervisor`,
which says on the channel whether the CLI started and how it exited, and ends its tree
when the CLI exits, when it gets SIGTERM, or at EOF on the channel (the owner let go, or
died). The server leaves each supervisor unreaped until the owner closes the channel, so
the pid and group id the owner signals are never reused meanwhile; it hears of the
supervisor's end as EOF on a pipe only that supervisor holds, and says ``gone`` on the
channel. It exits once the owner is gone (EOF on FD) and every session has ended.
"""

from __future__ import annotations

import json
import os
import selectors
import socket
import struct
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal
    from typing import Any
else:
    import _signal as signal
if TYPE_CHECKING or __package__:  # imported as a part of ctlwire
    from . import _supervisor
else:  # run, from its folder on sys.path
    import _supervisor

try:  # imported once here, not in every forked supervisor
    import resource
except ImportError:  # pragma: no cover - POSIX has it
    resource = None  # type: ignore[assignment]

HEADER = struct.Struct(">I")
FDS_PER_SPAWN = 5  # stdin, stdout, stderr, working directory, channel


class Session:
    """One forked supervisor: its pid, the owner's channel, and the pipe that says it ended."""

    def __init__(self, pid: int, channel: int, life: int) -> None:
        self.pid = pid
        self.channel = channel
        self.life = life
        self.dead = False  # EOF on `life`: the supervisor has exited
        self.released = False  # EOF on `channel`: the owner is done with it


class Server:
    def __init__(self, control_fd: int) -> None:
        self.control: socket.socket | None = socket.socket(fileno=control_fd)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.control, selectors.EVENT_READ, self.on_control)
        self.received = b""
        self.fds: list[int] = []
        self.sessions: dict[int, Session] = {}  # by pid
        self.top = max(control_fd, self.selector.fileno())  # the highest fd we may hold

    def serve(self) -> None:
        while self.control is not None or self.sessions:
            for key, _ in self.selector.select():
                key.data(key.fd)

    def on_control(self, _fd: int) -> None:
        assert self.control is not None
        try:
            data, fds, _flags, _addr = socket.recv_fds(self.control, 1 << 16, 64)
        except OSError:
            data, fds = b"", []
        for fd in fds:
            os.set_inheritable(fd, False)
            self.top = max(self.top, fd)
        self.fds += fds
        if not data:  # the owner is gone: its sessions end as their channels close
            self.selector.unregister(self.control)
            self.control.close()
            self.control = None
            self.close_all(self.fds)
            return
        self.received += data
        while len(self.received) >= HEADER.size:
            (size,) = HEADER.unpack_from(self.received)
            if len(self.received) < HEADER.size + size:
                break
            request = json.loads(self.received[HEADER.size : HEADER.size + size])
            self.received = self.received[HEADER.size + size :]
            fds, self.fds = self.fds[:FDS_PER_SPAWN], self.fds[FDS_PER_SPAWN:]
            if len(fds) == FDS_PER_SPAWN:
                self.spawn(request, fds)
            else:
                self.close_all(fds)  # cannot happen with our owner; nothing to answer on

    def spawn(self, request: dict[str, Any], fds: list[int]) -> None:
        channel = fds[4]
        try:
            life, life_end = os.pipe()
            self.top = max(self.top, life, life_end)
            pid = os.fork()
        except OSError as exc:
            say(channel, f"failed {exc.errno} 0")
            self.close_all(fds)
            return
        if pid == 0:
            try:
                self.become_supervisor(request, fds, life_end)
            except BaseException as exc:  # a bug: the owner's start error says what
                say(channel, f"crashed {type(exc).__name__}: {exc}".replace("\n", " "))
            finally:
                os._exit(1)
        self.close_all([*fds[:4], life_end])
        session = Session(pid, channel, life)
        self.sessions[pid] = session
        self.selector.register(life, selectors.EVENT_READ, lambda _: self.on_end(session))
        self.selector.register(channel, selectors.EVENT_READ, lambda _: self.on_release(session))

    def become_supervisor(self, request: dict[str, Any], fds: list[int], life_end: int) -> None:
        """In the forked child: drop the server's fds, then supervise this one session."""
        first = 3  # in as few calls as there are fds to keep: two per session otherwise
        for keep in sorted({*fds, life_end}):
            os.closerange(first, keep)
            first = keep + 1
        os.closerange(first, self.top + 1)  # never used again: we end with os._exit
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        inherit(request["inherit"])
        channel = fds[4]
        os.setpgid(0, 0)
        try:
            os.fchdir(fds[3])
        except OSError as exc:
            say(channel, f"failed {exc.errno}")
            return
        os.close(fds[3])
        supervisor = _supervisor.Supervisor(
            channel, 0, float(request["grace"]), bool(request["tree"]), served=True
        )
        supervisor.contain()
        supervisor.spawn(request["argv"], request["env"], (fds[0], fds[1], fds[2]))
        supervisor.run()
        supervisor.exit()

    def on_end(self, session: Session) -> None:
        session.dead = True
        self.selector.unregister(session.life)
        os.close(session.life)
        # After its own "exit" line, if it got to say it; with how it ended, if we can
        # read that without reaping it.
        say(session.channel, f"gone {ending(session.pid)}".strip())
        self.settle(session)

    def on_release(self, session: Session) -> None:
        try:
            if os.read(session.channel, 64):
                return  # the owner never writes; ignore anything that comes
        except OSError:
            pass
        session.released = True
        self.selector.unregister(session.channel)
        self.settle(session)

    def settle(self, session: Session) -> None:
        """Reap a supervisor once it has ended and the owner has let go of it."""
        if session.dead and session.released:
            try:  # noqa: SIM105 - contextlib costs 3 ms of start
                os.waitpid(session.pid, 0)  # it has closed every fd: it is exiting
            except ChildProcessError:
                pass
            os.close(session.channel)
            del self.sessions[session.pid]

    @staticmethod
    def close_all(fds: list[int]) -> None:
        for fd in fds:
            try:  # noqa: SIM105 - contextlib costs 3 ms of start
                os.close(fd)
            except OSError:
                pass


def inherit(attributes: dict[str, Any]) -> None:
    """Take on what a direct child of the owner would have inherited from it now, as far
    as we may (a limit or niceness may only go one way without privileges)."""
    try:
        if "affinity" in attributes:
            os.sched_setaffinity(0, attributes["affinity"])
    except (OSError, ValueError):
        pass
    try:  # noqa: SIM105 - contextlib costs 3 ms of start
        os.setpriority(os.PRIO_PROCESS, 0, attributes["nice"])
    except (OSError, KeyError):
        pass
    if "umask" in attributes:
        os.umask(attributes["umask"])
    if "oom_score_adj" in attributes:
        try:
            with open("/proc/self/oom_score_adj", "w") as adjust:
                adjust.write(attributes["oom_score_adj"])
        except OSError:
            pass
    for name, (soft, hard) in attributes.get("rlimits", {}).items():
        try:
            if resource is not None:
                resource.setrlimit(getattr(resource, name), (soft, hard))
        except (OSError, ValueError, AttributeError):
            pass


def ending(pid: int) -> str:
    """How the exited child ``pid`` ended, as a return code, without reaping it; "" where
    that cannot be read (no ``waitid``)."""
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
    except (OSError, AttributeError):
        return ""
    if info is None:
        return ""
    return str(info.si_status if info.si_code == os.CLD_EXITED else -info.si_status)


def say(channel: int, line: str) -> None:
    try:  # noqa: SIM105 - contextlib costs 3 ms of start
        os.write(channel, line.encode() + b"\n")
    except OSError:
        pass  # the owner is gone


def main() -> None:
    control_fd = int(sys.argv[1])
    os.set_inheritable(control_fd, False)
    # Not the owner's child (the owner reaps this first process at once): nothing of ours
    # for it to wait for or reap, ever. The pid goes first on the socket.
    pid = os.fork()
    if pid:
        os.write(control_fd, f"{pid}\n".encode())
        os._exit(0)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # only the owner ends us: by EOF
    try:  # noqa: SIM105 - once here, not in every forked supervisor
        _supervisor.libc()
    except (OSError, ImportError):
        pass
    if resource is not None:
        try:
            hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (OSError, ValueError):
            pass
    Server(control_fd).serve()


if __name__ == "__main__":
    main()
