"""Containment: the CLI's whole tree ends with the session, however the session ends.

A stand-in CLI (`tree_cli.py`) leaves a child in its group, a child that ignores
SIGTERM and a ``setsid`` daemon; each ending below must leave none of them (nor the
supervisor) running within 5 s, found by scanning ``/proc`` for the session's token,
while a sibling process and another session's tree, started beside it, live on.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
from helpers import TESTS, force_child, open_fds

import ctlwire.transport._contain as contain
from ctlwire.transport import SubprocessTransport, TransportError
from ctlwire.transport._child import KINDS

pytestmark = pytest.mark.anyio

TREE_CLI = TESTS / "tree_cli.py"
TREE_SIZE = 5  # the supervisor, the CLI, its child, the SIGTERM ignorer, the daemon
WITHIN = 5.0
ECHO = [sys.executable, "-c", "import sys\nfor x in sys.stdin: print(x, end='', flush=True)"]

# The owner of a transport, in a process of its own, for the endings that end it.
OWNER = """
import sys, anyio
from ctlwire.transport import SubprocessTransport

async def main():
    argv = [sys.executable, sys.argv[2], sys.argv[3], "stay"]
    async with SubprocessTransport(argv, close_timeout=1) as t:
        await t.receive_lines()
        print("ready", flush=True)
        await anyio.sleep_forever()

anyio.run(main, backend=sys.argv[1])
"""


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    return force_child(str(request.param), monkeypatch)


def new_token() -> str:
    return f"ctlwire-tree-{uuid.uuid4().hex}"


def tree_argv(token: str, mode: str = "eof") -> list[str]:
    return [sys.executable, str(TREE_CLI), token, mode]


_supervisors: dict[str, set[int]] = {}  # by token: each tree's supervisor, once seen


def _live(pid: int | str) -> tuple[list[bytes], int] | None:
    """A live (not zombie) process's argv and parent pid, from ``/proc``; None if gone."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] in ("Z", "X") else (argv, int(fields[1]))


def running_with(token: str) -> list[int]:
    """Every live process with ``token`` as an argument, from ``/proc``, and the
    supervisor above them: forked by the supervisor server, it has no token of its own,
    so it is remembered as the parent of the first it was seen with."""
    found, parents = [], set()
    for entry in os.listdir("/proc"):
        process = _live(entry) if entry.isdigit() else None
        if process is not None and token.encode() in process[0]:
            found.append(int(entry))
            parents.add(process[1])
    seen = _supervisors.setdefault(token, set())
    for pid in parents - set(found):
        process = _live(pid)
        if process is not None and any(b"_supervisor" in arg for arg in process[0]):
            seen.add(pid)
    for pid in seen - set(found):
        process = _live(pid)
        if process is not None and any(b"_supervisor" in arg for arg in process[0]):
            found.append(pid)
    return found


async def left_after(token: str, within: float = WITHIN, allowed: int = 0) -> list[int]:
    """What still runs of ``token``'s tree once at most ``allowed`` are left, or the time
    is up."""
    with anyio.move_on_after(within):
        while len(running_with(token)) > allowed:  # noqa: ASYNC110 - /proc, with a deadline
            await anyio.sleep(0.02)
    return running_with(token)


def kill_all(pids: list[int]) -> None:
    """Clean up after a test that expected (or found) survivors."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


async def tree_up(transport: SubprocessTransport) -> None:
    lines = await transport.receive_lines()
    assert b"tree_ready" in lines[0], lines


def escapes() -> int:
    """How many processes of a tree may outlive it: the ``setsid`` daemon, where the
    supervisor runs in ``group`` mode (as on macOS: the stripped run)."""
    return 0 if contain.holds_whole_tree() else 1


@asynccontextmanager
async def bystanders() -> AsyncIterator[None]:
    """A sibling process and another contained session, both to be left alone."""
    sibling_token, other_token = new_token(), new_token()
    sibling = subprocess.Popen(  # noqa: ASYNC220 - a bystander we must be able to kill
        [sys.executable, "-c", "import time; time.sleep(120)", sibling_token]
    )
    try:
        async with SubprocessTransport(tree_argv(other_token)) as other:
            await tree_up(other)
            yield
            assert len(running_with(sibling_token)) == 1, "the sibling was ended"
            assert len(running_with(other_token)) == TREE_SIZE, "another session was hit"
        kill_all(await left_after(other_token, allowed=escapes()))
    finally:
        sibling.kill()
        sibling.wait()


async def check_tree_ends(token: str) -> None:
    left = await left_after(token, allowed=escapes())
    kill_all(left)
    assert len(left) <= escapes(), f"survivors of the tree: {left}"


# -- endings in this process ----------------------------------------------------------


async def test_normal_end_ends_the_tree(kind: str) -> None:
    token = new_token()
    async with bystanders():
        async with SubprocessTransport(tree_argv(token, "eof")) as t:
            await tree_up(t)
            assert len(running_with(token)) == TREE_SIZE
        assert t.returncode == 0
        await check_tree_ends(token)


async def test_forced_close_ends_the_tree(kind: str) -> None:
    token = new_token()
    async with bystanders():
        async with SubprocessTransport(tree_argv(token, "stay"), close_timeout=0.2) as t:
            await tree_up(t)
        assert t.returncode == -signal.SIGTERM
        await check_tree_ends(token)


async def test_cancelling_the_holder_ends_the_tree(kind: str) -> None:
    token = new_token()
    async with bystanders():
        up = anyio.Event()

        async def hold() -> None:
            async with SubprocessTransport(tree_argv(token, "stay"), close_timeout=0.2) as t:
                await tree_up(t)
                up.set()
                await anyio.sleep_forever()

        async with anyio.create_task_group() as tg:
            tg.start_soon(hold)
            await up.wait()
            tg.cancel_scope.cancel()
        await check_tree_ends(token)


# -- endings of the owning process -----------------------------------------------------


async def end_owner(anyio_backend: str, how: signal.Signals) -> None:
    token = new_token()
    async with bystanders():
        owner = subprocess.Popen(  # noqa: ASYNC220 - an owner we must be able to kill
            [sys.executable, "-c", OWNER, anyio_backend, str(TREE_CLI), token],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert owner.stdout is not None
            assert owner.stdout.readline() == "ready\n"
            assert len(running_with(token)) == TREE_SIZE + 1  # and the owner
            owner.send_signal(how)
            with anyio.fail_after(20):
                while owner.poll() is None:  # noqa: ASYNC110 - a child, with a deadline
                    await anyio.sleep(0.02)
        finally:
            if owner.poll() is None:
                owner.kill()
            owner.wait()
        await check_tree_ends(token)


async def test_ctrl_c_of_the_owner_ends_the_tree(kind: str, anyio_backend: str) -> None:
    await end_owner(anyio_backend, signal.SIGINT)


async def test_sigkill_of_the_owner_ends_the_tree(kind: str, anyio_backend: str) -> None:
    await end_owner(anyio_backend, signal.SIGKILL)


FORKS = """
import os, sys, time, anyio
from ctlwire.transport import SubprocessTransport

async def main():
    argv = [sys.executable, sys.argv[2], sys.argv[3], "stay"]
    async with SubprocessTransport(argv) as t:
        await t.receive_lines()
        forked = os.fork()  # as multiprocessing's fork start method does
        if forked == 0:
            time.sleep(60)
            os._exit(0)
        print(forked, flush=True)
        await anyio.sleep_forever()

anyio.run(main, backend=sys.argv[1])
"""


async def test_a_forked_child_of_the_owner_does_not_keep_the_tree(
    kind: str, anyio_backend: str
) -> None:
    """A child forked without exec inherits the owner's end of the pipe; it must let go,
    or the supervisor would wait for it before seeing the owner's death."""
    token = new_token()
    owner = subprocess.Popen(  # noqa: ASYNC220 - an owner we must be able to kill
        [sys.executable, "-c", FORKS, anyio_backend, str(TREE_CLI), token],
        stdout=subprocess.PIPE,
        text=True,
    )
    forked = 0
    try:
        assert owner.stdout is not None
        forked = int(owner.stdout.readline())
        owner.kill()
        owner.wait()
        left = await left_after(token, allowed=1 + escapes())
        assert forked in left
        assert len(left) <= 1 + escapes(), f"survivors of the tree: {left}"
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()
        kill_all(running_with(token))


def test_the_tree_outlives_the_thread_that_started_it() -> None:
    """trio starts processes from worker threads that exit when idle: the end of the
    spawning thread is not the end of the owner (no parent-death signal)."""
    spawn = contain.prepare(ECHO)
    started: list[subprocess.Popen[bytes]] = []

    def start() -> None:
        process = subprocess.Popen(
            spawn.argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            pass_fds=spawn.pass_fds,
            process_group=0,
        )
        spawn.started(process.pid)
        started.append(process)
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(b"up\n")
        process.stdin.flush()
        assert process.stdout.readline() == b"up\n"  # the supervisor runs the CLI

    thread = threading.Thread(target=start)
    thread.start()
    thread.join()
    (process,) = started
    assert process.stdin is not None and process.stdout is not None
    try:
        process.stdin.write(b"still there\n")
        process.stdin.flush()
        assert process.stdout.readline() == b"still there\n"
    finally:
        process.stdin.close()
        assert process.wait(timeout=10) == 0
        process.stdout.close()
        spawn.release()


# -- group mode, opting out, and what cannot be set up ----------------------------------


async def test_group_mode_ends_the_group(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the supervisor cannot see the whole tree (macOS), the group still ends,
    the SIGTERM ignorer included; only the daemon that left the session escapes."""
    monkeypatch.setattr(contain, "holds_whole_tree", lambda: False)
    token = new_token()
    async with SubprocessTransport(tree_argv(token, "stay"), close_timeout=0.2) as t:
        await tree_up(t)
    left = await left_after(token, allowed=1)
    kill_all(left)
    assert len(left) == 1


async def test_contain_false_leaves_descendants_alone(kind: str) -> None:
    """The opt-out: the daemon that left the group outlives the session (and the test's
    /proc scan sees it, so the checks above can fail)."""
    token = new_token()
    async with SubprocessTransport(tree_argv(token, "eof"), contain=False) as t:
        await tree_up(t)
        assert len(running_with(token)) == TREE_SIZE - 1  # no supervisor
    left = await left_after(token, allowed=1)
    kill_all(left)
    assert len(left) == 1


async def test_what_cannot_be_contained_costs_one_warning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(contain, "holds_whole_tree", lambda: True)
    monkeypatch.setattr(contain, "linux_lacks", lambda: "prctl is refused (a test)")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with SubprocessTransport(ECHO) as t:
            await t.send(b'{"a": 1}\n')
            assert await t.receive_lines() == [b'{"a": 1}']
    assert [str(w.message) for w in caught] == [
        "ctlwire: descendants that leave the CLI's process group are not contained:"
        " prctl is refused (a test)"
    ]
    assert caught[0].category is contain.ContainmentWarning


async def test_no_interpreter_for_the_supervisor_still_starts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys, "executable", "")
    with pytest.warns(contain.ContainmentWarning, match="no Python interpreter") as caught:
        async with SubprocessTransport(ECHO) as t:
            await t.send(b'{"a": 1}\n')
            assert await t.receive_lines() == [b'{"a": 1}']
    assert len(caught) == 1


async def test_a_frozen_app_runs_the_cli_uncontained_with_one_warning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A frozen app's sys.executable is the app itself: it must never be run as Python."""
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    with pytest.warns(contain.ContainmentWarning, match="frozen application") as caught:
        async with SubprocessTransport(ECHO) as t:
            await t.send(b'{"a": 1}\n')
            assert await t.receive_lines() == [b'{"a": 1}']
    assert len(caught) == 1


# -- what the supervisor must pass through ----------------------------------------------


async def test_exit_code_and_signal_pass_through(kind: str) -> None:
    code = "import os, signal, sys; sys.stdin.read(); os.kill(os.getpid(), int(sys.argv[1]))"
    for sig in (signal.SIGUSR2, signal.SIGKILL):
        async with SubprocessTransport([sys.executable, "-c", code, str(sig)]) as t:
            pass
        assert t.returncode == -sig
    async with SubprocessTransport([sys.executable, "-c", "import sys; sys.exit(3)"]) as t:
        pass
    assert t.returncode == 3


async def test_start_errors_stay_start_errors(kind: str, tmp_path: Path) -> None:
    not_executable = tmp_path / "cli"
    not_executable.write_text("#!/bin/sh\n")
    for argv, says in (
        ([str(tmp_path / "missing")], "No such file"),
        (["ctlwire-no-such-cli"], "No such file"),
        ([str(not_executable)], "Permission denied"),
        ([str(tmp_path)], "Permission denied"),
    ):
        with pytest.raises(TransportError, match=says):
            await SubprocessTransport(argv).start()


async def test_bad_cwd_and_env_are_start_errors_naming_them(kind: str, tmp_path: Path) -> None:
    """Checked before the supervisor runs, they fail as a direct spawn would."""
    missing = tmp_path / "gone"
    with pytest.raises(TransportError, match=f"No such file or directory: '{missing}'"):
        await SubprocessTransport(["./cli"], cwd=missing).start()
    with pytest.raises(TransportError, match="cannot start"):
        await SubprocessTransport(["./cli"], cwd=5).start()  # type: ignore[arg-type]
    with pytest.raises(TransportError, match="cannot start"):
        await SubprocessTransport(ECHO, env={"PATH": 5}).start()  # type: ignore[dict-item]


async def test_a_start_cancelled_before_it_began_leaves_nothing(kind: str) -> None:
    """asyncio forks before its first wait: a cancel there used to kill the supervisor
    and leak the containment pipe; now the spawn finishes and the close ends it all."""
    token = new_token()
    before = open_fds()
    with anyio.CancelScope() as scope:
        scope.cancel()
        async with SubprocessTransport(tree_argv(token, "stay"), close_timeout=0.2):
            await anyio.sleep(5)  # pragma: no cover - cancelled above
    await check_tree_ends(token)
    assert open_fds() - before == set()


async def test_the_supervisor_holds_none_of_the_pipes(kind: str) -> None:
    """The CLI closing stdout is EOF at once, though the supervisor lives on."""
    code = "import os, sys; os.close(1); sys.stdin.read()"
    async with SubprocessTransport([sys.executable, "-c", code]) as t:
        with anyio.fail_after(5):
            with pytest.raises(anyio.EndOfStream):
                await t.receive_lines()
        assert t.returncode is None


# -- everything else ctlwire starts ------------------------------------------------------


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGINT])
def test_record_ends_the_cli_tree_with_the_proxy(tmp_path: Path, how: signal.Signals) -> None:
    """Killed, the proxy leaves nothing; Ctrl-C reaches the CLI (through the proxy and
    the supervisor), which dies of it, as the proxy's exit code says."""
    if how == signal.SIGINT and escapes():
        pytest.skip("group mode: the escaped daemon holds the proxy's stdout open")
    token = new_token()
    proxy = subprocess.Popen(
        [sys.executable, "-m", "ctlwire", "record", "--log", str(tmp_path / "log.jsonl"),
         "--", *tree_argv(token, "stay")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proxy.stdout is not None
        assert b"tree_ready" in proxy.stdout.readline()
        assert len(running_with(token)) == TREE_SIZE + 1  # and the proxy
        proxy.send_signal(how)
        code = proxy.wait(timeout=10)
        assert code == (-signal.SIGKILL if how == signal.SIGKILL else 128 + signal.SIGINT)
        deadline = time.monotonic() + WITHIN
        while running_with(token) and time.monotonic() < deadline:
            time.sleep(0.02)
        left = running_with(token)
        kill_all(left)
        assert len(left) <= escapes(), f"survivors of the tree: {left}"
    finally:
        if proxy.poll() is None:
            proxy.kill()
        proxy.communicate()


async def test_the_cli_gets_the_environment_it_was_given(kind: str) -> None:
    """Not what the supervisor's own interpreter added to it (locale coercion sets
    LC_CTYPE under a C locale), nor less."""
    env = {"PATH": os.environ.get("PATH", os.defpath), "LC_ALL": "", "LANG": "C", "X": "1"}
    async with SubprocessTransport(["env"], env=env) as t:
        lines = await t.receive_lines()
        with contextlib.suppress(anyio.EndOfStream):
            while True:
                lines += await t.receive_lines()
    assert dict(line.decode().split("=", 1) for line in lines) == env
