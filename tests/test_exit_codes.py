"""One exit-code table for every subcommand (README, "Exit codes"): 0 ok, 1 a finding or
a failed replay, 2 unusable input or usage; checked here for each kind of bad input."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import SHIPPED_LOGS, TESTS, run_python

GOOD = str(SHIPPED_LOGS / "slow_hook.jsonl")
USES_A_LOG: dict[str, Callable[[str], list[str]]] = {
    "replay": lambda log: ["replay", log],
    "fake-cli": lambda log: ["fake-cli", "--script", log],
    "show": lambda log: ["show", log],
    "diff": lambda log: ["diff", GOOD, log],
    "lint": lambda log: ["lint", log],
}
BAD_INPUTS = ("missing file", "directory", "empty file", "not a log")


def ctlwire(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CTLWIRE_FAKE_SCRIPT"}
    return subprocess.run(
        [sys.executable, "-m", "ctlwire", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
        cwd=cwd,
    )


def bad_input(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / "input.jsonl"
    if kind == "directory":
        path.mkdir()
    elif kind == "empty file":
        path.write_text("\n")
    elif kind == "not a log":
        path.write_text("hello, world\n")
    return path


@pytest.mark.parametrize("kind", BAD_INPUTS)
@pytest.mark.parametrize("command", sorted(USES_A_LOG))
def test_unusable_input_exits_2_naming_the_file(tmp_path: Path, command: str, kind: str) -> None:
    path = bad_input(tmp_path, kind)
    done = ctlwire(*USES_A_LOG[command](str(path)))
    said = done.stdout + done.stderr
    assert done.returncode == 2, said
    assert str(path) in said and "Traceback" not in said and ":0:" not in said, said


BAD_ARGUMENTS = {
    "replay": [["--wait", "soon"], ["--backend", "curio"], ["--max-line-bytes", "0"]],
    "fake-cli": [[], ["--script", GOOD, "--timeout", "later"]],
    "record": [["--log", "x.jsonl"], ["--", "echo", "hi"], ["--log", "x", "--replace", "="]],
    "show": [[], [GOOD, "--width", "wide"]],
    "diff": [[GOOD]],
    "lint": [[]],
    "fake-api": [["--port", "99999"], ["--port", "http"]],
}


@pytest.mark.parametrize(
    ("command", "args"),
    [(c, a) for c, cases in BAD_ARGUMENTS.items() for a in cases],
    ids=[f"{c} {' '.join(a)}" for c, cases in BAD_ARGUMENTS.items() for a in cases],
)
def test_bad_arguments_are_a_usage_error_exit_2(
    tmp_path: Path, command: str, args: list[str]
) -> None:
    done = ctlwire(command, *args, cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith(f"usage: ctlwire {command}"), done.stderr
    assert f"ctlwire {command}: error: " in done.stderr and "Traceback" not in done.stderr
    assert not list(tmp_path.iterdir())  # nothing was written, no session was run


@pytest.mark.parametrize("args", [[], ["frobnicate"]])
def test_no_or_an_unknown_subcommand_exits_2(args: list[str]) -> None:
    assert ctlwire(*args).returncode == 2


@pytest.mark.parametrize("kind", ["missing file", "empty file"])
def test_fake_api_home_must_be_a_folder(tmp_path: Path, kind: str) -> None:
    home = bad_input(tmp_path, kind)
    done = ctlwire("fake-api", "--home", str(home))
    assert done.returncode == 2 and f"--home {home}: not a folder" in done.stderr


@pytest.mark.parametrize("kind", ["missing folder", "directory"])
def test_record_that_cannot_write_its_log_warns_once_and_runs(tmp_path: Path, kind: str) -> None:
    log = tmp_path / "no" / "such" / "x.jsonl" if kind == "missing folder" else tmp_path
    code = "print('hi'); raise SystemExit(3)"
    done = ctlwire("record", "--log", str(log), "--", sys.executable, "-c", code)
    assert (done.returncode, done.stdout) == (3, "hi\n"), done.stderr  # the CLI's own code
    warnings = done.stderr.splitlines()
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith(f"ctlwire record: warning: cannot write the log {log} (")


def test_a_finding_or_a_failed_replay_exits_1(tmp_path: Path) -> None:
    no_exit = tmp_path / "no_exit.jsonl"
    no_exit.write_text(
        "".join(x for x in Path(GOOD).read_text().splitlines(True) if '"exit"' not in x)
    )
    assert ctlwire("lint", str(no_exit)).returncode == 1
    newer = TESTS / "data" / "cli-2.1.332" / "real_write_turn.jsonl"
    assert ctlwire("diff", str(SHIPPED_LOGS / "real_write_turn.jsonl"), str(newer)).returncode == 1
    header_only = tmp_path / "header_only.jsonl"
    header_only.write_text('{"ctlwire_log": 1, "argv": []}\n')
    assert ctlwire("replay", str(header_only)).returncode == 1
    assert ctlwire("show", GOOD).returncode == ctlwire("lint", GOOD).returncode == 0


def test_replay_on_trio_without_trio_says_how_to_install_it() -> None:
    done = run_python(
        "import sys\n"
        "sys.modules['trio'] = None  # as if only `pip install ctlwire` had run\n"
        "from ctlwire.fixtures.command import main\n"
        "sys.exit(main(sys.argv[1:]))\n",
        "replay",
        "--backend",
        "trio",
        GOOD,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert "--backend trio needs trio" in done.stderr
    assert "pip install 'ctlwire[trio]'" in done.stderr
