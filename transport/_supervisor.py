"""The containment supervisor: a tiny process between ctlwire and the CLI that ends its tree.

Forked for each session by the supervisor server (``_supervisor_server``), or run by
``_contain`` as ``python -I -S ... _supervisor FD PID GRACE UNSET MODE -- ARGV`` (the
portable path, ``ctlwire record``), in a process group of its own. It imports only the
standard library (a fresh interpreter starts in ~10 ms) and never touches the CLI's
bytes: stdin, stdout and stderr pass straight to the CLI, which it starts with
``posix_spawn``, and it keeps no copy of them. In ``tree`` mode (Linux, with ``/proc``
and pidfds) it is a child subreaper, so descendants that leave the group or session
(double fork, ``setsid``) are re-parented to it. It ends every descendant, SIGTERM first
and SIGKILL after ``GRACE`` seconds, when the CLI exits, when it gets SIGTERM, or when
the owner lets go or is gone (EOF on ``FD``, whose other end only the owner holds); then
it reports the CLI's exit (served: a line on FD; run directly: it exits as the CLI did,
code or signal). Only processes found as its descendants in ``/proc`` are ever
signalled, each through a pidfd opened before its parentage is checked again, so a
reused pid is never hit. In ``group`` mode (macOS, the BSDs: no ``/proc``, no
``prctl``) the CLI runs in a process group of its own, which it ends on the same
occasions (descendants that left that group escape). UNSET: variables this
interpreter's start set (locale coercion) that the CLI must not get.
"""

from __future__ import annotations

import os
import select
import sys
import time

TYPE_CHECKING = False  # ``typing`` would cost an import
if TYPE_CHECKING:
    import signal
    from typing import Any
else:
    import _signal as signal  # the C module: ``signal`` would import enum, ~3 ms more

PR_SET_CHILD_SUBREAPER = 36
# Passed on to the CLI; SIGTERM means "end the tree", SIGCHLD means "reap".
FORWARDED = ("SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGWINCH")
# Signals Python ignores that the CLI must get back at their default, as Popen does.
RESTORED = ("SIGPIPE", "SIGXFZ", "SIGXFSZ")
NOT_HERE = (2, 20)  # ENOENT, ENOTDIR: look in the next folder of PATH
POLL = 0.02
KILL_WAIT = 2.0  # after SIGKILL: how long to wait for the dead to be reaped


def prctl(option: int, value: int) -> bool:
    """Linux ``prctl(option, value)``; False where it is missing or refused."""
    try:
        return bool(libc().prctl(option, value, 0, 0, 0) == 0)
    except (OSError, AttributeError, ImportError):
        return False


_libc: list[object] = []  # loaded once: a server loads it before it forks supervisors


def libc() -> Any:
    """The C library, through ctypes (~3 ms to import: only where it is needed)."""
    if not _libc:
        import ctypes

        _libc.append(ctypes.CDLL(None, use_errno=True))
    return _libc[0]


def candidates(program: str, env: dict[str, str]) -> list[str]:
    """Where to look for ``program``, in order, as ``execvp`` would with ``env``'s PATH."""
    if os.sep in program:
        return [program]
    return [os.path.join(folder, program) for folder in os.get_exec_path(env)]


def parent_of(pid: int) -> int | None:
    """The parent pid of ``pid`` from ``/proc``, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rfind(b")") + 2 :].split()
    return int(fields[1]) if len(fields) > 1 else None


def descendants(root: int) -> set[int]:
    """Every process below ``root``, found by scanning ``/proc`` for parent links."""
    children: dict[int, list[int]] = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return set()
    for name in names:
        if name.isdigit():
            parent = parent_of(int(name))
            if parent is not None:
                children.setdefault(parent, []).append(int(name))
    found: set[int] = set()
    todo = [root]
    while todo:
        for pid in children.get(todo.pop(), ()):
            if pid not in found:
                found.add(pid)
                todo.append(pid)
    return found


class Supervisor:
    """The CLI, its exit status, and the end of its tree.

    ``served``: forked by the supervisor server (``_supervisor_server``) rather than run
    by the owner; ``owner_fd`` is then the session's channel, on which it reports the
    start and the exit instead of exiting as the CLI did.
    """

    def __init__(
        self, owner_fd: int, owner_pid: int, grace: float, tree: bool, served: bool = False
    ) -> None:
        self.owner_fd = owner_fd
        self.owner_pid = owner_pid
        self.served = served
        self.grace = grace
        self.me = os.getpid()
        self.cli = 0
        self.status: int | None = None  # the CLI's wait status, once reaped
        self.stopping = False
        self.tree = tree
        self.wake_r, wake_w = os.pipe()
        for fd in (self.wake_r, wake_w):
            os.set_blocking(fd, False)
        signal.set_wakeup_fd(wake_w)
        for name in ("SIGCHLD", "SIGTERM", *FORWARDED):
            if hasattr(signal, name):
                signal.signal(getattr(signal, name), lambda *_: None)  # wakeup fd tells

    def contain(self) -> None:
        """Become a subreaper (tree mode). No parent-death signal: it would fire when the
        spawning *thread* exits, and trio spawns from worker threads that idle out."""
        if self.tree:
            prctl(PR_SET_CHILD_SUBREAPER, 1)
        if not self.served and os.getppid() != self.owner_pid:
            self.stopping = True  # gone already: we were re-parented

    def spawn(
        self,
        argv: list[str],
        env: dict[str, str] | None = None,
        stdio: tuple[int, int, int] | None = None,
    ) -> None:
        """Start the CLI in our group (its own in ``group`` mode), with ``stdio`` as its 0,
        1 and 2 if given; ``posix_spawn``, so no copy of this interpreter is made. If it
        cannot start, say why (the served owner raises it) and end with 127."""
        env = dict(os.environ) if env is None else env
        actions = [(os.POSIX_SPAWN_DUP2, fd, target) for target, fd in enumerate(stdio or ())]
        restored = [getattr(signal, name) for name in RESTORED if hasattr(signal, name)]
        group: dict[str, Any] = {} if self.tree else {"setpgroup": 0}  # 3.11 refuses None
        failure: OSError | None = None
        for path in candidates(argv[0], env):
            try:
                self.cli = os.posix_spawn(
                    path, argv, env, file_actions=actions, setsigdef=restored, **group
                )
                failure = None
                break
            except OSError as exc:  # as execvp: the first error that is not "not here"
                if failure is None or failure.errno in NOT_HERE:
                    failure = exc
        if self.served:
            self.tell(f"failed {failure.errno}" if failure else f"started {self.me} {self.cli}")
        elif failure:
            sys.stderr.write(f"ctlwire: cannot start {argv[0]!r}: {failure.strerror}\n")
            sys.stderr.flush()
        self.stopping = failure is not None
        # The pipes are the CLI's alone: its EOF on stdout, and a broken stdin once it is
        # gone, must reach the transport while we still run.
        if stdio is not None:
            for fd in stdio:
                os.close(fd)
            return
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.close(null)

    def tell(self, line: str) -> None:
        """One line to the owner on the session's channel (served), if it still listens."""
        try:  # noqa: SIM105 - contextlib costs 3 ms of start
            os.write(self.owner_fd, line.encode() + b"\n")
        except OSError:
            pass

    def run(self) -> None:
        """Wait for the CLI's exit, SIGTERM or the owner's end; then end the tree."""
        watch = select.poll()  # not select(): a server's fds may be numbered past 1023
        watch.register(self.wake_r, select.POLLIN)
        watch.register(self.owner_fd, select.POLLIN)
        while self.status is None and not self.stopping:
            ready = {fd for fd, _ in watch.poll()}
            if self.owner_fd in ready and not self.owner_says():
                self.stopping = True  # EOF: the owner is gone (or let go of the session)
                watch.unregister(self.owner_fd)
            if self.wake_r in ready:
                self.handle_signals()
        self.end_tree()

    def owner_says(self) -> bytes:
        """What the owner end holds: b"" at EOF (the owner never writes there)."""
        try:
            return os.read(self.owner_fd, 1)
        except OSError:
            return b""  # a reset channel: gone too

    def handle_signals(self) -> None:
        try:
            numbers = os.read(self.wake_r, 256)
        except BlockingIOError:
            numbers = b""
        for number in numbers:
            if number == signal.SIGTERM:
                self.stopping = True
            elif number != signal.SIGCHLD and self.status is None:
                os.kill(self.cli, number)  # our unreaped child: its pid is still its own
        self.reap()

    def reap(self) -> bool:
        """Collect every exited child (the CLI and the orphans re-parented to us);
        whether any child is left."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return False
            if pid == 0:
                return True
            if pid == self.cli:
                self.status = status
                if not self.tree:
                    # Reaped just now: end the group's leftovers before its id can be
                    # reused (no pid is reused while a group with that id has members).
                    killpg(self.cli, signal.SIGKILL)

    def end_tree(self) -> None:
        """SIGTERM every descendant, SIGKILL what is left after the grace, reap them."""
        if not self.tree:
            self.end_group()
            return
        termed: set[int] = set()
        deadline = time.monotonic() + self.grace
        # A subreaper with no child has no descendant: an orphan would be our child.
        found = descendants(self.me) if self.reap() else set()
        while found and time.monotonic() < deadline:
            for pid in found - termed:
                send(pid, signal.SIGTERM, self.me)
            termed |= found
            self.pause()
            found = descendants(self.me)
        deadline = time.monotonic() + KILL_WAIT
        while found and time.monotonic() < deadline:
            for pid in found:
                send(pid, signal.SIGKILL, self.me)
            self.pause()
            found = descendants(self.me)
        self.reap()

    def end_group(self) -> None:
        """Without /proc: the CLI's own process group, SIGTERM, the grace, SIGKILL; its
        leftovers get SIGKILL as the CLI is reaped (`reap`)."""
        if self.status is not None or self.cli == 0:
            return
        killpg(self.cli, signal.SIGTERM)  # not reaped: the group id is still the CLI's
        deadline = time.monotonic() + self.grace
        while self.status is None and time.monotonic() < deadline:
            self.pause()
        if self.status is None:
            killpg(self.cli, signal.SIGKILL)
        deadline = time.monotonic() + KILL_WAIT
        while self.status is None and time.monotonic() < deadline:
            self.pause()

    def pause(self) -> None:
        watch = select.poll()
        watch.register(self.wake_r, select.POLLIN)
        watch.poll(POLL * 1000)
        self.handle_signals()

    def exit(self) -> None:
        """Exit as the CLI did: the same code, or death by the same signal; served, tell
        the owner the code instead."""
        status = self.status
        if self.served:
            code = 127 if self.cli == 0 else 1
            self.tell(f"exit {code if status is None else os.waitstatus_to_exitcode(status)}")
            os._exit(0)
        if status is None:
            os._exit(127 if self.cli == 0 else 1)
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            signal.set_wakeup_fd(-1)
            try:
                import resource  # no core file of ours for the CLI's crash

                resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            except (ImportError, OSError, ValueError):
                pass
            if sig != signal.SIGKILL:  # the one signal whose handler cannot be set
                signal.signal(sig, signal.SIG_DFL)
                signal.pthread_sigmask(signal.SIG_UNBLOCK, [sig])
            os.kill(self.me, sig)
            os._exit(128 + sig)
        os._exit(os.waitstatus_to_exitcode(status))


def killpg(group: int, sig: int) -> None:
    try:  # noqa: SIM105 - contextlib costs 3 ms of start
        os.killpg(group, sig)
    except OSError:
        pass  # empty already


def send(pid: int, sig: int, ancestor: int) -> None:
    """Signal ``pid`` only if it is still ``ancestor``'s descendant once it is pinned."""
    try:
        fd = os.pidfd_open(pid)
    except (OSError, AttributeError):
        return
    try:
        if descends(pid, ancestor):
            signal.pidfd_send_signal(fd, sig)
    except OSError:
        pass  # it died meanwhile
    finally:
        os.close(fd)


def descends(pid: int, ancestor: int) -> bool:
    """Whether ``ancestor`` is on ``pid``'s parent chain now."""
    seen: set[int] = set()
    current: int | None = pid
    while current is not None and current > 1 and current not in seen:
        seen.add(current)
        current = parent_of(current)
        if current == ancestor:
            return True
    return False


def main() -> None:
    args = sys.argv[1:]
    owner_fd, owner_pid, grace, tree = int(args[0]), int(args[1]), float(args[2]), args[4]
    os.set_inheritable(owner_fd, False)
    for name in args[3].split(",") if args[3] != "-" else ():
        os.environ.pop(name, None)  # set by this interpreter's start (locale coercion)
    supervisor = Supervisor(owner_fd, owner_pid, grace, tree == "tree")
    supervisor.contain()
    if not supervisor.stopping:
        supervisor.spawn(args[6:])
    supervisor.run()
    supervisor.exit()


if __name__ == "__main__":
    main()
