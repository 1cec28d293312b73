"""The supervisor server: one per owning process, on the raw-pipes path (``linux``, ``posix``).

What must hold beyond the trees of ``test_contain.py``: a CLI that cannot be executed
fails ``start``; the CLI gets the owner's environment and directory as they are at the
session's start, not as they were when the server started; the server ends with its
owner however the owner ends, a child forked from the owner included; a killed server
is replaced, and the sessions it had forked still end whole. Checked through ``/proc``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from helpers import TESTS, force_child
from test_contain import (
    _live,
    check_tree_ends,
    escapes,
    left_after,
    new_token,
    running_with,
    tree_argv,
    tree_up,
)

from ctlwire.transport import SubprocessTransport, TransportError, _child_served, _contain, _served

pytestmark = pytest.mark.anyio

WITHIN = 5.0
ECHO = [sys.executable, "-c", "import sys\nfor x in sys.stdin: print(x, end='', flush=True)"]
PRINTS = "import os, sys; print(os.getcwd()); print(os.environ.get('CTLWIRE_PROBE'))"


@pytest.fixture(params=["linux", "posix"])
def kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    return force_child(str(request.param), monkeypatch)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (not a zombie), from ``/proc``."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


async def gone_within(pid: int, seconds: float = WITHIN) -> bool:
    with anyio.move_on_after(seconds):
        while alive(pid):  # noqa: ASYNC110 - /proc, with a deadline
            await anyio.sleep(0.02)
    return not alive(pid)


async def test_a_cli_that_cannot_be_executed_fails_start(kind: str, tmp_path: Path) -> None:
    """Found and executable, but exec fails: the error is start's, as a direct spawn's."""
    no_interpreter = tmp_path / "cli"
    no_interpreter.write_text("#!/ctlwire/no/such/interpreter\n")
    no_interpreter.chmod(0o755)
    no_format = tmp_path / "data"
    no_format.write_bytes(b"\x7fELF not really")
    no_format.chmod(0o755)
    for path, says in ((no_interpreter, "No such file"), (no_format, "Exec format error")):
        with pytest.raises(TransportError, match=says):
            await SubprocessTransport([str(path)]).start()


async def test_the_cli_gets_the_owners_directory_and_environment_of_now(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _served.server_pid(_contain.run_module)  # started before the changes below
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CTLWIRE_PROBE", "set after the server started")
    async with SubprocessTransport([sys.executable, "-c", PRINTS]) as t:
        lines = await t.receive_lines()
        if len(lines) < 2:
            lines += await t.receive_lines()
    assert lines == [str(tmp_path).encode(), b"set after the server started"]


OWNER = """
import os, sys, time, anyio
from ctlwire.transport import SubprocessTransport, _served

async def main():
    argv = [sys.executable, sys.argv[2], sys.argv[3], "stay"]
    async with SubprocessTransport(argv, close_timeout=1) as t:
        await t.receive_lines()
        forked = os.fork() if sys.argv[4] == "fork" else -1  # as multiprocessing's does
        if forked == 0:
            time.sleep(60)
            os._exit(0)
        print(_served.link.pid, forked, flush=True)
        if sys.argv[4] == "exit":
            return
        await anyio.sleep_forever()

anyio.run(main, backend=sys.argv[1])
"""


@pytest.mark.parametrize("ending", ["exit", "kill", "fork"])
async def test_the_server_ends_with_its_owner(kind: str, anyio_backend: str, ending: str) -> None:
    """The owner exits, or is killed (after forking a child that lives on): the server
    and the whole tree end."""
    token = new_token()
    owner = subprocess.Popen(  # noqa: ASYNC220 - an owner we must be able to kill
        [sys.executable, "-c", OWNER, anyio_backend, str(TESTS / "tree_cli.py"), token, ending],
        stdout=subprocess.PIPE,
        text=True,
    )
    forked = -1
    try:
        assert owner.stdout is not None
        server, forked = map(int, owner.stdout.readline().split())
        assert alive(server)
        if ending != "exit":
            owner.kill()
        owner.wait(20)
        left = set(await left_after(token, allowed=int(forked > 0) + escapes()))
        assert len(left - {forked}) <= escapes(), f"survivors of the tree: {left}"
        assert await gone_within(server), "the supervisor server outlived its owner"
    finally:
        if forked > 0:
            os.kill(forked, signal.SIGKILL)
        if owner.poll() is None:
            owner.kill()
            owner.wait()
        for pid in running_with(token):
            os.kill(pid, signal.SIGKILL)


async def test_a_killed_server_is_replaced_and_its_sessions_still_end(kind: str) -> None:
    token = new_token()
    async with SubprocessTransport(tree_argv(token, "stay"), close_timeout=0.2) as t:
        await tree_up(t)
        first = _served.server_pid(_contain.run_module)
        assert first is not None
        os.kill(first, signal.SIGKILL)  # reaped by init: it is not our child
        assert await gone_within(first)
        async with SubprocessTransport([sys.executable, "-c", "print('hi')"]) as other:
            assert await other.receive_lines() == [b"hi"]
        second = _served.server_pid(_contain.run_module)
        assert second not in (None, first)
    await check_tree_ends(token)
    assert t.returncode is not None


INHERITS = """
import os, resource, sys, anyio
from ctlwire.transport import SubprocessTransport, _contain, _served

SHOW = (
    "import os, resource; mask = os.umask(0); os.umask(mask); print(sorted("
    "os.sched_getaffinity(0)), os.getpriority(os.PRIO_PROCESS, 0), oct(mask),"
    " resource.getrlimit(resource.RLIMIT_NOFILE))"
)

async def main():
    _served.server_pid(_contain.run_module)  # the server has what we had before these:
    os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})
    os.setpriority(os.PRIO_PROCESS, 0, os.getpriority(os.PRIO_PROCESS, 0) + 1)
    os.umask(0o027)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft - 1, hard))
    exec(SHOW)
    async with SubprocessTransport([sys.executable, "-c", SHOW]) as t:
        print((await t.receive_lines())[0].decode())

anyio.run(main)
"""


def test_the_cli_inherits_the_owners_process_attributes_of_now(kind: str) -> None:
    """CPU affinity, niceness, umask and resource limits, changed after the server
    started: the CLI has them as a direct child would, not the server's."""
    done = subprocess.run(
        [sys.executable, "-c", INHERITS], capture_output=True, text=True, timeout=30, check=True
    )
    owner, cli = done.stdout.splitlines()
    assert cli == owner


async def test_without_a_server_each_session_runs_its_own_supervisor(
    kind: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A server that cannot start costs the speed, not the containment: the supervisor
    runs directly, as on the portable path, and a warning says so."""
    monkeypatch.setattr(_served, "link", _served.ServerLink())  # no server yet
    monkeypatch.setattr(_served, "SERVER_MODULE", "ctlwire_no_such_module")
    token = new_token()
    async with SubprocessTransport(tree_argv(token, "stay"), close_timeout=0.2) as t:
        await tree_up(t)
        supervisor = _live(t.pid)  # run directly, its argv has the CLI's
        assert supervisor is not None and token.encode() in supervisor[0]
        assert len(running_with(token)) == 5  # the supervisor, the CLI and its three
    await check_tree_ends(token)
    assert "per session instead: the supervisor server did not start: its first" in caplog.text


async def test_a_relative_or_deleted_cwd_means_what_it_means_to_the_owner_now(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _served.server_pid(_contain.run_module)  # started in another directory
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path)
    async with SubprocessTransport([sys.executable, "-c", PRINTS], cwd="work") as t:
        assert (await t.receive_lines())[0] == str(tmp_path / "work").encode()
    gone = tmp_path / "gone"
    gone.mkdir()
    inode = gone.stat().st_ino
    monkeypatch.chdir(gone)
    gone.rmdir()
    show = "import os; print(os.stat('.').st_ino)"
    async with SubprocessTransport([sys.executable, "-c", show]) as t:
        assert await t.receive_lines() == [str(inode).encode()]


async def test_the_cli_gets_the_c_environment_putenv_changed(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CTLWIRE_PROBE", raising=False)
    os.putenv("CTLWIRE_PROBE", "from putenv")  # not in os.environ, yet a child's
    try:
        async with SubprocessTransport([sys.executable, "-c", PRINTS]) as t:
            lines = await t.receive_lines()
            if len(lines) < 2:
                lines += await t.receive_lines()
    finally:
        os.unsetenv("CTLWIRE_PROBE")
    assert lines[1] == b"from putenv"


async def test_environment_names_execve_refuses_are_start_errors(kind: str) -> None:
    for env, says in (
        ({"A=B": "1"}, "illegal environment variable name"),
        ({"": "1"}, "illegal environment variable name"),
        ({"X": "\ud800"}, "surrogate"),
    ):
        with pytest.raises(TransportError, match=says):
            await SubprocessTransport(ECHO, env=env).start()


async def test_a_supervisor_killed_from_outside_takes_its_group_with_it(kind: str) -> None:
    """As an OOM kill of the supervisor: the CLI and what is in its group end, the
    return code says SIGKILL; only what left the group (the daemon) can escape."""
    token = new_token()
    async with SubprocessTransport(tree_argv(token, "stay"), close_timeout=0.2) as t:
        await tree_up(t)
        assert t.pid is not None
        os.kill(t.pid, signal.SIGKILL)
        with anyio.fail_after(WITHIN):
            assert await t.wait_exit(WITHIN) == -signal.SIGKILL
    left = await left_after(token, allowed=1)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert len(left) <= 1, f"survivors of the tree: {left}"


async def test_a_stopped_server_fails_start_once_and_is_replaced(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_served, "link", _served.ServerLink())
    monkeypatch.setattr(_child_served, "START_WAIT", 0.5)
    stopped = _served.server_pid(_contain.run_module)
    assert stopped is not None
    os.kill(stopped, signal.SIGSTOP)
    try:
        with pytest.raises(TransportError, match="no word from its supervisor"):
            await SubprocessTransport(ECHO).start()
        async with SubprocessTransport([sys.executable, "-c", "print('hi')"]) as t:
            assert await t.receive_lines() == [b"hi"]
        assert _served.link.pid not in (None, stopped)
    finally:
        os.kill(stopped, signal.SIGKILL)
    assert await gone_within(stopped)


def test_the_server_never_holds_the_owners_stderr() -> None:
    """A parent capturing the owner's output sees its end when the owner ends."""
    server = _served.server_pid(_contain.run_module)
    assert os.readlink(f"/proc/{server}/fd/2") == os.devnull


DROPS = """
import os, sys, anyio
from ctlwire.transport import SubprocessTransport, TransportError

async def main():
    async with SubprocessTransport(["id", "-u"]) as t:  # a server started as root
        print("root:", (await t.receive_lines())[0].decode(), flush=True)
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)
    sys.executable = sys.argv[1]  # a Python that user may run, for its supervisor
    try:
        async with SubprocessTransport(["id", "-u"]) as t:
            print("dropped:", (await t.receive_lines())[0].decode(), flush=True)
    except TransportError as exc:  # no interpreter this user may run: refused is fine
        print("dropped: refused", exc, flush=True)

anyio.run(main)
"""


SYSTEM_PYTHON = Path("/usr/bin/python3")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root, to drop it")
@pytest.mark.skipif(not SYSTEM_PYTHON.exists(), reason="needs a Python any user may run")
def test_a_cli_started_after_the_owner_dropped_root_never_runs_as_root(kind: str) -> None:
    """A server started as root must not spawn for an owner that has dropped root."""
    done = subprocess.run(
        [sys.executable, "-c", DROPS, str(SYSTEM_PYTHON)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert "not contained" not in done.stderr  # the server's path, as the first time
    root, dropped = done.stdout.splitlines()
    assert root == "root: 0"
    assert dropped in ("dropped: 65534",) or dropped.startswith("dropped: refused"), dropped
