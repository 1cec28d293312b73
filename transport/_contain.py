"""Containment: the CLI's whole tree ends with the session, however the session ends.

`prepare` turns the CLI's argv into what to spawn instead, plus a handle
(`Containment`) that the spawn step calls once the process exists and that the child
releases on close. On POSIX the CLI runs under the supervisor (``_supervisor``), which
ends every descendant when the CLI exits, when it is told to stop, or when the owner
dies: it holds one end of a pipe or socket whose other end only this process holds, so
a SIGKILL of the owner reads as EOF there. The raw-pipes path hands the spawn to the
supervisor server instead (`Containment.serve`, ``_served``): a fork, not a new
interpreter, per session. On Windows the child is put, suspended, into
a Job Object that kills everything in it when its last handle closes (``_job``).
If containment cannot be set up the session still starts, with one
`ContainmentWarning` that says what is not contained and why.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
import shutil
import sys
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import CtlwireError

if TYPE_CHECKING:
    from ._job import JobContainment

logger = logging.getLogger(__name__)

SUPERVISOR = str(Path(__file__).with_name("_supervisor.py"))
# Runs the module named next as a top-level module from its folder (put last on sys.path,
# after the standard library): imported, it loads from its cached bytecode.
RUN_MODULE = "import sys; sys.path.append(sys.argv.pop(1)); __import__(sys.argv.pop(1)).main()"


def run_module(name: str) -> list[str]:
    """The command that runs module ``name`` of this folder in a bare interpreter."""
    return [sys.executable, "-I", "-S", "-c", RUN_MODULE, os.path.dirname(SUPERVISOR), name]


# How long the supervisor gives descendants between SIGTERM and SIGKILL (at most).
GRACE = 1.0
# Set by a Python interpreter's own start (locale coercion), never wanted by the CLI.
INTERPRETER_SETS = ("LC_CTYPE",)


class ContainmentWarning(CtlwireError, UserWarning):
    """Containment could not be set up: the session runs, part of its tree is not held."""


def check_program(program: str, cwd: str | os.PathLike[str] | None, path: str) -> None:
    """Raise the OSError (or ValueError) a direct spawn of ``program`` in ``cwd`` would,
    before any supervisor runs, so that "not found" and "not executable" stay start
    errors on every path."""
    where = os.fspath(cwd) if cwd is not None else "."
    if "\0" in os.fsdecode(where):
        raise ValueError("embedded null byte in cwd")
    if not os.path.isdir(where):
        code = errno.ENOTDIR if os.path.exists(where) else errno.ENOENT
        raise OSError(code, os.strerror(code), where)
    if os.sep in program or (os.altsep and os.altsep in program):
        target = os.path.join(where, program)
        if not os.path.exists(target):
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), program)
        if os.path.isdir(target) or not os.access(target, os.X_OK):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), program)
        return
    # Relative folders of PATH are looked up from the CLI's directory, as exec does there.
    folders = (os.path.join(where, folder) for folder in path.split(os.pathsep))
    if shutil.which(program, path=os.pathsep.join(folders)) is None:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), program)


@functools.cache
def linux_lacks() -> str | None:
    """Why the supervisor cannot hold escaped descendants here (None: it can).

    Asked once, with calls that change nothing: ``PR_GET_CHILD_SUBREAPER``, ``/proc``.
    """
    if not os.path.isdir("/proc/self"):
        return "/proc is not mounted"
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        value = ctypes.c_int(0)
        if libc.prctl(37, ctypes.byref(value), 0, 0, 0) != 0:  # PR_GET_CHILD_SUBREAPER
            return f"prctl(PR_SET_CHILD_SUBREAPER) fails: {os.strerror(ctypes.get_errno())}"
    except (OSError, AttributeError, ImportError) as exc:
        return f"prctl cannot be called: {exc}"
    return None


def holds_whole_tree() -> bool:
    """Whether the supervisor can find and safely signal every descendant here (Linux
    with pidfds); elsewhere it runs in ``group`` mode, as on macOS."""
    return sys.platform.startswith("linux") and hasattr(os, "pidfd_open")


def supervisor_lacks() -> str | None:
    """Why no supervisor can run (None: it can)."""
    if getattr(sys, "frozen", False):  # sys.executable is the frozen app, not Python
        return "this is a frozen application, with no Python interpreter to run it"
    if not sys.executable or not os.access(sys.executable, os.X_OK):
        return f"no Python interpreter to run it (sys.executable is {sys.executable!r})"
    if not os.path.exists(SUPERVISOR):
        return f"{SUPERVISOR} is missing"
    if not hasattr(os, "posix_spawn"):
        return "this Python has no os.posix_spawn to start the CLI with"
    return None


_owner_ends: set[int] = set()  # the write ends this process holds, one per supervisor


def _forget_owner_ends() -> None:
    """In a child forked without exec (multiprocessing's fork): it is not the owner, and
    must not keep a supervisor waiting for EOF after the owner dies."""
    for fd in _owner_ends:
        with contextlib.suppress(OSError):
            os.close(fd)
    _owner_ends.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_owner_ends)


def warn(what: str, why: str) -> None:
    warnings.warn(f"ctlwire: {what} not contained: {why}", ContainmentWarning, stacklevel=5)


@dataclass(eq=False)
class Containment:
    """One spawn's containment: what to run, and what to do once it runs and after."""

    argv: list[str]
    cwd: str | os.PathLike[str] | None = None
    env: Mapping[str, str] | None = None
    program: str = ""  # the CLI, for errors (default: argv[0])
    pass_fds: tuple[int, ...] = ()
    creationflags: int = 0
    _owner_end: int | None = None
    _job: JobContainment | None = None
    _served: tuple[list[str], float, bool] | None = None  # the CLI's argv, grace, tree

    def __post_init__(self) -> None:
        self.program = self.program or self.argv[0]

    @property
    def servable(self) -> bool:
        """Whether this spawn may go to the supervisor server instead (see `serve`)."""
        return self._served is not None

    def serve(self, stdio: tuple[int, int, int]) -> int | None:
        """Have this process's supervisor server fork the supervisor (no interpreter to
        start); ``stdio``: the CLI's stdin, stdout and stderr. The session's channel, for
        a `ServedChild`; None if no server can take it (spawn `argv` then: the supervisor
        run directly). Raises what Popen would for bad arguments."""
        from ._served import ServerUnavailable, request_spawn

        assert self._served is not None
        argv, grace, tree = self._served
        try:
            channel = request_spawn(
                run_module, argv, cwd=self.cwd, env=self.env, grace=grace, tree=tree, stdio=stdio
            )
        except ServerUnavailable as exc:
            logger.warning("ctlwire: starting a supervisor per session instead: %s", exc)
            return None
        self.failed()  # the pipe of a supervisor run directly: not needed
        return channel

    def started(self, pid: int) -> None:
        """The process ``pid`` exists: finish the set-up (call `release` after its end)."""
        for fd in self.pass_fds:
            os.close(fd)  # the supervisor's end: it has its own copy now
        self.pass_fds = ()
        if self._job is not None:
            problem = self._job.adopt(pid)
            if problem:
                warn("the CLI's process tree is", problem)

    def failed(self) -> None:
        """The spawn failed: release everything."""
        for fd in self.pass_fds:
            os.close(fd)
        self.pass_fds = ()
        self.release()

    def release(self) -> None:
        """Drop the owner's hold; the supervisor or the job ends whatever is left."""
        fd, self._owner_end = self._owner_end, None
        if fd is not None:
            _owner_ends.discard(fd)
            os.close(fd)
        job, self._job = self._job, None
        if job is not None:
            job.close()


def prepare(
    argv: Sequence[str],
    enabled: bool = True,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    terminate_timeout: float = 2 * GRACE,
) -> Containment:
    """What to spawn for ``argv``, contained when ``enabled`` and the platform allows.

    The supervisor ends what ignores SIGTERM within half of ``terminate_timeout`` (at
    most `GRACE`), before the transport's own SIGKILL of the group can end it first.
    Raises the OSError a spawn would for a program that is missing or not executable.
    """
    grace = min(GRACE, terminate_timeout / 2)
    plain = Containment(list(argv), cwd, env)
    if not enabled:
        return plain
    if sys.platform == "win32":
        from ._job import JobContainment, win32_api

        plain._job = JobContainment(win32_api())
        plain.creationflags = JobContainment.CREATE_SUSPENDED
        return plain
    environ = env if env is not None else os.environ
    check_program(plain.argv[0], cwd, environ.get("PATH", os.defpath))
    problem = supervisor_lacks()
    if problem:
        warn(
            "the CLI's descendants outside its process group and the case of this"
            " process dying are",
            f"the supervisor cannot run: {problem}",
        )
        return plain
    mode = "group"
    if holds_whole_tree():
        problem = linux_lacks()
        if problem:
            warn("descendants that leave the CLI's process group are", problem)
        else:
            mode = "tree"
    unset = ",".join(name for name in INTERPRETER_SETS if name not in environ) or "-"
    supervisor_end, owner_end = os.pipe()
    contained = Containment(
        [*run_module("_supervisor"), str(supervisor_end), str(os.getpid()),
         f"{grace:.3f}", unset, mode, "--", *plain.argv],
        cwd,
        env,
        plain.program,
    )  # fmt: skip
    contained.pass_fds = (supervisor_end,)
    contained._owner_end = owner_end
    contained._served = (plain.argv, grace, mode == "tree")
    _owner_ends.add(owner_end)
    return contained
