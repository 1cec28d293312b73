"""The containment supervisor: a tiny process between ctlwire and the CLI that ends its tree.

Run by ``_contain`` (``python -I -S _supervisor.py FD PID GRACE UNSET MODE -- ARGV``, or
imported from its cached bytecode) in the process group the transport made. It imports
only the standard library (a fresh interpreter starts in ~10 ms) and never touches the
CLI's bytes: stdin, stdout and stderr pass straight to the CLI, which it forks and
execs, and it keeps no copy of them. In ``tree`` mode (Linux, with ``/proc`` and
pidfds) it is a child subreaper, so descendants that leave the group or session (double
fork, ``setsid``) are re-parented to it. It ends every descendant, SIGTERM first and
SIGKILL after ``GRACE`` seconds, when the CLI exits, when it gets SIGTERM, or when the
owner ``PID`` is gone (EOF on ``FD``, whose write end only the owner holds); then it
exits as the CLI did (code or signal). Only processes found as its descendants in
``/proc`` are ever signalled, each through a pidfd opened before its parentage is
checked again, so a reused pid is never hit. In ``group`` mode (macOS, the BSDs: no
``/proc``, no ``prctl``) the CLI runs in a process group of its own, which it ends on
the same occasions (descendants that left that group escape). UNSET: variables this
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
else:
    import _signal as signal  # the C module: ``signal`` would import enum, ~3 ms more

PR_SET_CHILD_SUBREAPER = 36
# Passed on to the CLI; SIGTERM means "end the tree", SIGCHLD means "reap".
FORWARDED = ("SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGWINCH")
# Signals Python ignores that the CLI must get back at their default, as Popen does.
RESTORED = ("SIGPIPE", "SIGXFZ", "SIGXFSZ")
POLL = 0.02
KILL_WAIT = 2.0  # after SIGKILL: how long to wait for the dead to be reaped


def prctl(option: int, value: int) -> bool:
    """Linux ``prctl(option, value)``; False where it is missing or refused."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(option, value, 0, 0, 0) == 0)
    except (OSError, AttributeError, ImportError):
        return False


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
    """The CLI, its exit status, and the end of its tree."""

    def __init__(self, owner_fd: int, owner_pid: int, grace: float, tree: bool) -> None:
        self.owner_fd = owner_fd
        self.owner_pid = owner_pid
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
        if os.getppid() != self.owner_pid:
            self.stopping = True  # gone already: we were re-parented

    def spawn(self, argv: list[str]) -> None:
        """Fork and exec the CLI in our group; exit 127 with a message if exec fails."""
        err_r, err_w = os.pipe()  # close-on-exec: EOF means exec worked
        pid = os.fork()
        if pid == 0:
            try:
                if not self.tree:
                    os.setpgid(0, 0)  # a group of its own, which we can end without us
                os.close(err_r)
                signal.set_wakeup_fd(-1)
                for name in RESTORED:
                    if hasattr(signal, name):
                        signal.signal(getattr(signal, name), signal.SIG_DFL)
                os.execvp(argv[0], argv)
            except OSError as exc:
                os.write(err_w, f"{exc.errno}".encode())
            finally:
                os._exit(127)
        os.close(err_w)
        self.cli = pid
        if not self.tree:
            try:  # noqa: SIM105 - contextlib costs 3 ms of start
                os.setpgid(pid, pid)  # also here: whichever side runs first
            except OSError:
                pass
        with os.fdopen(err_r, "rb") as f:
            failed = f.read()
        if failed:
            code = int(failed)
            sys.stderr.write(f"ctlwire: cannot start {argv[0]!r}: {os.strerror(code)}\n")
            sys.stderr.flush()
            self.stopping = True
        # The pipes are the CLI's alone: its EOF on stdout, and a broken stdin once it is
        # gone, must reach the transport while we still run.
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.close(null)

    def run(self) -> None:
        """Wait for the CLI's exit, SIGTERM or the owner's end; then end the tree."""
        watched = [self.wake_r, self.owner_fd]
        while self.status is None and not self.stopping:
            ready, _, _ = select.select(watched, [], [])
            if self.owner_fd in ready and not os.read(self.owner_fd, 1):
                self.stopping = True  # EOF: the owner is gone
                watched.remove(self.owner_fd)
            if self.wake_r in ready:
                self.handle_signals()
        self.end_tree()

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
        select.select([self.wake_r], [], [], POLL)
        self.handle_signals()

    def exit(self) -> None:
        """Exit as the CLI did: the same code, or death by the same signal."""
        status = self.status
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
