"""The `ctlwire` command for newcomers: help with defaults, --version, Ctrl-C in replay."""

from __future__ import annotations

import argparse
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from helpers import SHIPPED_LOGS, one_turn_log, run_python

from ctlwire import __version__
from ctlwire.fixtures.command import build_parser

COMMANDS = ("replay", "fake-cli", "record", "show", "diff", "lint", "fake-api")


def ctlwire(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ctlwire", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_version() -> None:
    done = ctlwire("--version")
    assert (done.returncode, done.stdout.strip()) == (0, f"ctlwire {__version__}")


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_has_help_and_shows_its_default(command: str) -> None:
    sub = build_parser()._subparsers
    assert sub is not None
    parser = sub._group_actions[0].choices[command]  # type: ignore[attr-defined]
    for action in parser._actions:
        assert action.help, f"{command} {action.dest} has no help"
    text = ctlwire(command, "--help").stdout
    assert text.startswith(f"usage: ctlwire {command}")
    for action in parser._actions:
        if action.default not in (None, False, argparse.SUPPRESS) and action.option_strings:
            assert f"(default: {action.default})" in " ".join(text.split()), action.dest


def test_top_level_help_lists_every_command() -> None:
    text = ctlwire("--help").stdout
    for command in COMMANDS:
        assert command in text


@contextmanager
def ctlwire_running(*args: str) -> Iterator[subprocess.Popen[str]]:
    """`ctlwire ARGS` with pipes; killed on the way out if a failed check left it running."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "ctlwire", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def interrupt(proc: subprocess.Popen[str]) -> tuple[str, str]:
    """Send Ctrl-C's SIGINT; the rest of stdout and stderr once the command exits."""
    proc.send_signal(signal.SIGINT)
    return proc.communicate(timeout=20)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_ctrl_c_in_replay_prints_what_passed_and_exits_130(tmp_path: Path, backend: str) -> None:
    fast, slow = one_turn_log(tmp_path / "fast.jsonl"), one_turn_log(tmp_path / "slow", gap=60.0)
    args = ["replay", "--realtime", "--backend", backend, str(fast), str(slow)]
    with ctlwire_running(*args) as proc:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # blocks until the first log's line
        assert first.startswith("PASS "), first
        started = time.monotonic()
        out, err = interrupt(proc)
    assert proc.returncode == 130, err
    assert "interrupted: 1 passed, 0 failed, 1 not finished" in out
    assert "Traceback" not in err, err
    assert time.monotonic() - started < 15


def test_ctrl_c_handed_over_in_a_task_group_is_still_ctrl_c(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """On trio the interrupt may reach replay inside a task group's exception group."""
    from ctlwire.fixtures import command, replay_command

    def interrupted_in_a_group(*args: object, **kwargs: object) -> None:
        raise BaseExceptionGroup("from a task group", [KeyboardInterrupt()])

    monkeypatch.setattr(replay_command.anyio, "run", interrupted_in_a_group)
    log = one_turn_log(tmp_path / "one.jsonl")
    assert command.main(["replay", str(log)]) == 130
    assert "interrupted: 0 passed, 0 failed, 1 not finished" in capsys.readouterr().out


def test_license_matches_the_metadata() -> None:
    from importlib.metadata import metadata

    meta = metadata("ctlwire")
    assert meta["License-Expression"] == "MIT"
    text = (Path(__file__).parents[1] / "LICENSE").read_text()
    assert text.startswith("MIT License") and "Copyright (c) 2026 ctlwire authors" in text
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL") or [])
    assert set(urls) == {"Homepage", "Repository", "Issues"}


def test_fake_api_prints_the_environment_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    with ctlwire_running("fake-api", "--home", str(tmp_path)) as proc:
        assert proc.stdout is not None
        exports = {}
        while "HOME" not in exports:  # HOME is printed last
            line = proc.stdout.readline()
            assert line, "fake-api ended before printing HOME"
            if line.startswith("export "):
                key, value = line.removeprefix("export ").strip().split("=", 1)
                exports[key] = value
        url = exports["ANTHROPIC_BASE_URL"]
        assert url.startswith("http://127.0.0.1:") and exports["HTTPS_PROXY"] == url
        assert exports["HOME"] == str(tmp_path)
        _, err = interrupt(proc)
    assert proc.returncode == 0, err
    assert tmp_path.is_dir()  # a HOME the user gave is theirs to keep


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_fake_api_removes_the_temporary_home_it_made(sig: signal.Signals) -> None:
    with ctlwire_running("fake-api") as proc:
        assert proc.stdout is not None
        home = None
        while home is None:
            line = proc.stdout.readline()
            assert line, "fake-api ended before printing HOME"
            if line.startswith("export HOME="):
                home = Path(line.removeprefix("export HOME=").strip())
        assert home.is_dir() and home.name.startswith("ctlwire-home-")
        (home / ".claude").mkdir()  # what the CLI leaves there
        (home / ".claude" / "settings.json").write_text("{}")
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert not home.exists()


def test_bad_arguments_get_a_clear_error_not_a_traceback() -> None:
    shipped = str(SHIPPED_LOGS / "slow_hook.jsonl")
    bad_replace = ctlwire("fake-cli", "--script", shipped, "--replace", "bad")
    assert bad_replace.returncode == 2
    assert "--replace: expected OLD=NEW, got 'bad'" in bad_replace.stderr
    assert bad_replace.stderr.startswith("usage: ctlwire fake-cli")
    assert "Traceback" not in bad_replace.stderr
    bad_port = ctlwire("fake-api", "--port", "99999")
    assert bad_port.returncode == 2 and "a port is 0 to 65535, got 99999" in bad_port.stderr


def test_record_writes_no_log_for_a_session_that_never_ran(tmp_path: Path) -> None:
    log = tmp_path / "session.jsonl"
    missing = ctlwire("record", "--log", str(log), "--", str(tmp_path / "no-such-cli"))
    assert missing.returncode == 127, missing.stderr
    assert "cannot start" in missing.stderr and "no-such-cli" in missing.stderr
    bad = ctlwire("record", "--log", str(log), "--replace", "=x", "--", sys.executable)
    assert bad.returncode == 2 and bad.stderr.startswith("usage: ctlwire record"), bad.stderr
    assert "--replace: expected OLD=NEW, got '=x'" in bad.stderr
    assert not log.exists()


def test_fake_api_on_a_port_in_use_says_so() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = ctlwire("fake-api", "--port", str(port))
        # Called as a library, serve() leaves the process's signal handlers as it found them.
        as_library = run_python(
            "import signal, sys\n"
            "from ctlwire.fixtures.fake_api import serve\n"
            "assert serve(int(sys.argv[1])) == 2\n"
            "print(signal.getsignal(signal.SIGTERM) is signal.SIG_DFL,"
            " signal.getsignal(signal.SIGHUP) is signal.SIG_DFL)\n",
            str(port),
        )
    assert done.returncode == 2
    assert f"cannot serve on 127.0.0.1:{port}" in done.stderr and "Traceback" not in done.stderr
    assert as_library.stdout.split() == ["True", "True"], as_library.stderr
