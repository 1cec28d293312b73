"""Platform seams: choosing the child-process implementation, importing without what
other systems lack, the macOS-stripped run, and Ctrl-C ending the whole process tree."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import STRIPPED, force_child, run_python

import ctlwire.transport._child as child_seam
from ctlwire import ControlSession
from ctlwire.transport import SubprocessTransport, TransportError
from ctlwire.transport._child import CHILD_ENV, KINDS, choose, missing

MACOS_LACKS = {
    "os": ("pidfd_open", "waitid", "P_PIDFD", "WNOWAIT"),
    "fcntl": ("F_SETPIPE_SZ", "F_GETPIPE_SZ"),
}


# -- choosing -------------------------------------------------------------------------


@pytest.mark.anyio
async def test_the_platform_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CHILD_ENV, raising=False)
    expected = "posix" if STRIPPED else "linux"
    assert choose(None) == expected
    assert SubprocessTransport(["x"]).kind == expected


@pytest.mark.anyio
@pytest.mark.parametrize("kind", KINDS)
async def test_forced_by_keyword_and_by_environment(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if missing(kind):
        pytest.skip(f"{kind} cannot run here")
    monkeypatch.delenv(CHILD_ENV, raising=False)
    assert SubprocessTransport(["x"], child=kind).kind == kind
    monkeypatch.setenv(CHILD_ENV, kind)
    assert SubprocessTransport(["x"]).kind == kind
    other = "portable" if kind != "portable" else "posix"
    assert SubprocessTransport(["x"], child=other).kind == other  # the keyword wins


def test_a_missing_feature_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(os, "pidfd_open", raising=False)
    monkeypatch.delenv(CHILD_ENV, raising=False)
    with pytest.raises(TransportError, match=r"'linux'.*os\.pidfd_open"):
        SubprocessTransport(["x"], child="linux")
    assert choose(None) == "posix"  # the next best


def test_no_implementation_at_all_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(os, "killpg")
    monkeypatch.delenv(CHILD_ENV, raising=False)
    with pytest.raises(TransportError, match=r"no child-process implementation.*os\.killpg"):
        SubprocessTransport(["x"])
    monkeypatch.setattr(child_seam.sys, "platform", "win32")
    assert choose(None) == "portable"  # Windows needs no POSIX call


# -- importing where things are missing ------------------------------------------------

IMPORT_ALL = """
import importlib, pkgutil, sys
sys.modules["fcntl"] = None  # as on Windows: `import fcntl` raises ImportError
import ctlwire.transport, ctlwire.protocol, ctlwire.fixtures
names = []
for package in (ctlwire.transport, ctlwire.protocol, ctlwire.fixtures):
    names.append(package.__name__)
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        names.append(info.name)
for name in names:
    importlib.import_module(name)
assert "fcntl" not in {m for m, v in sys.modules.items() if v is not None}
print(len(names))
"""


def test_every_module_imports_without_fcntl() -> None:
    out = run_python(IMPORT_ALL)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) >= 25


NO_POSIX_SIGNALS = """
import os, signal, sys
sys.modules["fcntl"] = None
for name in ("SIGKILL", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGCHLD", "SIGPIPE"):
    delattr(signal, name)
for name in ("killpg", "setsid", "pidfd_open", "waitid", "WNOWAIT", "setpgid"):
    if hasattr(os, name):
        delattr(os, name)
"""

NO_IMPLEMENTATION = """
from ctlwire.transport import SubprocessTransport, TransportError
try:
    SubprocessTransport(["x"])
except TransportError as exc:
    print(exc)
"""


def test_every_module_imports_without_posix_signals() -> None:
    out = run_python(NO_POSIX_SIGNALS + IMPORT_ALL + NO_IMPLEMENTATION)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.splitlines()[0]) >= 25
    assert "no child-process implementation" in out.stdout
    assert "os.killpg" in out.stdout and "signal.SIGKILL" in out.stdout


# -- the macOS-stripped run -------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.skipif(not STRIPPED, reason="only in the stripped run of `make test`")
async def test_the_stripped_run_lacks_what_macos_lacks(monkeypatch: pytest.MonkeyPatch) -> None:
    import fcntl

    modules = {"os": os, "fcntl": fcntl}
    for module, names in MACOS_LACKS.items():
        for name in names:
            assert not hasattr(modules[module], name), f"{module}.{name} is still there"
    monkeypatch.delenv(CHILD_ENV, raising=False)
    assert SubprocessTransport(["x"]).kind == "posix"
    out = run_python("import os; print(hasattr(os, 'pidfd_open'), hasattr(os, 'waitid'))")
    assert out.stdout.split() == ["False", "False"], "Python children are stripped too"


# -- Ctrl-C -------------------------------------------------------------------------------

CTRL_C = """
import os, sys, anyio
from ctlwire.transport import SubprocessTransport

# A CLI that ignores stdin EOF and leaves a grandchild in its group.
CLI = (
    "import subprocess, sys, time\\n"
    "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\\n"
    "print(p.pid, flush=True)\\n"
    "time.sleep(120)\\n"
)

async def main():
    async with SubprocessTransport([sys.executable, "-c", CLI], close_timeout=1) as t:
        (grandchild,) = await t.receive_lines()
        print(os.getpid(), t.pid, int(grandchild), flush=True)
        await anyio.sleep_forever()

anyio.run(main, backend=sys.argv[1])
"""


def gone(pid: int) -> bool:
    """Not running: no such process, or a zombie nobody has collected yet."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_ctrl_c_ends_the_child_and_its_tree(
    kind: str, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    force_child(kind, monkeypatch)
    script = subprocess.Popen(
        [sys.executable, "-c", CTRL_C, backend],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert script.stdout is not None
        pids = [int(p) for p in script.stdout.readline().split()]
        assert len(pids) == 3, script.stderr.read() if script.stderr else ""
        assert not any(gone(pid) for pid in pids)
        script.send_signal(signal.SIGINT)  # what a terminal's Ctrl-C sends its foreground
        script.wait(timeout=20)
        deadline = time.monotonic() + 10
        while not all(gone(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert all(gone(pid) for pid in pids), [(pid, gone(pid)) for pid in pids]
        assert script.stderr is not None
        assert "KeyboardInterrupt" in script.stderr.read()
    finally:
        if script.poll() is None:
            script.kill()
            script.wait()


CLOSE_BY_CTRL_C = """
import sys, time, anyio
from contextlib import aclosing
from ctlwire import ControlSession, SubprocessTransport

IGNORES_EOF = [
    sys.executable, "-c",
    "import json, time; print(json.dumps({'type': 'system'}), flush=True); time.sleep(120)",
]

def ctrl_c():
    if sys.argv[3] == "grouped":  # as a trio task group hands it over
        return BaseExceptionGroup("from a task group", [KeyboardInterrupt()])
    return KeyboardInterrupt()

async def main():
    async with SubprocessTransport(IGNORES_EOF, close_timeout=20) as t:
        print(t.pid, flush=True)
        if sys.argv[2] == "session":
            async with ControlSession(t) as session:
                async with aclosing(session.messages()) as messages:
                    await anext(messages)
                raise ctrl_c()
        await t.receive_lines()
        raise ctrl_c()

started = time.monotonic()
try:
    anyio.run(main, backend=sys.argv[1])
except BaseException:
    print(round(time.monotonic() - started, 1), flush=True)
"""


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize("wrapper", ["transport", "session"])
@pytest.mark.parametrize("how", ["bare", "grouped"])
def test_ctrl_c_skips_the_exit_wait_through_any_wrapper(
    backend: str, wrapper: str, how: str
) -> None:
    """Leaving by Ctrl-C, the close goes straight to SIGTERM instead of waiting
    ``close_timeout`` (20 s) for a CLI that ignores EOF: also when a session wraps the
    transport (and closes it first), and when a task group wrapped the interrupt."""
    done = run_python(CLOSE_BY_CTRL_C, backend, wrapper, how, timeout=120)
    pid, took = done.stdout.split()
    assert float(took) < 10, done.stderr
    assert gone(int(pid))


@pytest.mark.anyio
async def test_a_close_after_a_handled_ctrl_c_is_still_graceful() -> None:
    """Only a Ctrl-C leaving the block hurries the close: cleaning up inside an
    ``except KeyboardInterrupt:`` gives the CLI its usual time to finish after EOF."""
    finishes_after_eof = "import sys, time; sys.stdin.read(); time.sleep(0.3); sys.exit(0)"
    try:
        raise KeyboardInterrupt  # pressed, then handled
    except KeyboardInterrupt:
        async with (
            SubprocessTransport([sys.executable, "-c", finishes_after_eof]) as t,
            ControlSession(t),
        ):
            pass
    assert t.returncode == 0
