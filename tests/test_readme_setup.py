"""A newcomer's first hour: on a fresh copy of the clone, the README's own set-up
(`make replay`) and nothing else, then every README command line as pasted.

Unlike test_readme.py, nothing here comes from the test extra: the copy gets its own
`.venv` from `make replay` (pip's cache makes that quick), and the README's lines run
after `. .venv/bin/activate`, as the README says, with this test's virtualenv off PATH.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

import pytest
from helpers import first_run_only
from test_readme import README, ROOT, run_bash, sh_lines

SET_UP = "make replay"
ACTIVATE = ". .venv/bin/activate"
LEFT_OUT = ("*.egg-info", "__pycache__", "node_modules", ".*_cache")


def fresh_copy(target: Path) -> Path:
    """The clone's files, without anything built or installed (.venv, build, .git)."""
    ignore = shutil.ignore_patterns(".venv", "build", ".git", *LEFT_OUT)
    shutil.copytree(ROOT, target, ignore=ignore, symlinks=True)
    return target


def newcomer_env() -> dict[str, str]:
    """This environment without this test run's virtualenv: PATH without its bin."""
    ours = {str(Path(sys.executable).parent), os.environ.get("VIRTUAL_ENV", "") + "/bin"}
    path = [p for p in os.environ["PATH"].split(os.pathsep) if p not in ours]
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    return {**env, "PATH": os.pathsep.join(path)}


def readme_line_number(line: str) -> int:
    """Where a command line is in README.md (1-based)."""
    return README.read_text().splitlines().index(line) + 1


def test_the_first_command_is_the_set_up_and_says_where_ctlwire_is() -> None:
    text = README.read_text()
    first = re.search(r"```sh\n(\S.*?)\s+#", text)
    assert first is not None and first[1] == SET_UP
    assert "`.venv/bin/ctlwire`" in text and f"`{ACTIVATE}`" in text


@first_run_only
@pytest.mark.timeout(300)
def test_every_readme_command_line_runs_after_the_readme_set_up(tmp_path: Path) -> None:
    if shutil.which("make") is None:
        pytest.fail("the README's set-up needs make, which is not on PATH")
    clone = fresh_copy(tmp_path / "clone")
    env = newcomer_env()
    done = run_bash(SET_UP, clone, env, timeout=240)
    assert done.returncode == 0, f"README set-up `{SET_UP}` failed:\n{done.stdout}{done.stderr}"
    # Shipped logs by their short names, never by full paths into site-packages.
    assert "PASS fixtures/logs/slow_hook.jsonl " in done.stdout
    assert "site-packages" not in done.stdout, done.stdout
    ctlwire = clone / ".venv" / "bin" / "ctlwire"
    assert ctlwire.is_file(), "the README says ctlwire is in .venv/bin"
    # Nothing of the test extra came with the set-up: the lines below prove it suffices.
    no_pytest = run_bash(".venv/bin/python -c 'import pytest'", clone, env, timeout=60)
    assert no_pytest.returncode != 0, "make replay installed pytest: this test proves nothing"
    lines = [line for _, line in sh_lines()]
    assert any(line.startswith("ctlwire replay --backend trio") for line in lines)
    for line in lines:
        expected = re.search(r"# exits (\d+)\s*$", line)
        want = int(expected[1]) if expected else 0
        ran = run_bash(f"{ACTIVATE} && {line}", clone, env, timeout=60)
        assert ran.returncode == want, (
            f"README.md:{readme_line_number(line)}: `{line}` exited {ran.returncode}, not "
            f"{want}, after `{SET_UP}` and `{ACTIVATE}`:\n{ran.stdout}{ran.stderr}"
        )
