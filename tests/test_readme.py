"""The README cannot drift: every fenced ``python`` and ``sh`` block in it runs.

- A python block with a ``def test_`` runs under pytest (the plugin's fixtures; one that
  uses a cassette records it, then replays it), any other as a script in a throwaway
  folder, with the real CLI as ``claude`` on PATH and the fake Messages API's
  environment, so the embedding example runs a real turn offline. A block whose first
  line is ``# NAME.py`` is written under that name.
- A sh block runs line by line from the clone's root (comments and blank lines skipped);
  each line must exit 0, or N when it ends in ``# exits N``. A sh block that names a
  file some python block defines runs, in order, in a folder holding that file.
- A block right after ``<!-- not run: WHY -->`` is skipped, for the reason given; the
  environment block it marks is still checked against what ``ctlwire fake-api`` prints.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import TESTS

from ctlwire.fixtures.fake_api import FakeMessagesAPI

ROOT = TESTS.parent
README = ROOT / "README.md"
NOT_RUN = re.compile(r"<!-- not run: (.+?) -->")
FENCE = re.compile(r"^```(\w*)\s*$")


@dataclass
class Block:
    lang: str
    line: int  # of the opening fence
    text: str
    not_run: str | None

    @property
    def id(self) -> str:
        return f"{self.lang}@{self.line}"


def blocks(text: str) -> list[Block]:
    found: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if match is None:
            i += 1
            continue
        start = i
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        before = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        marked = NOT_RUN.fullmatch(before.strip())
        body = "\n".join(lines[start + 1 : end]) + "\n"
        found.append(Block(match[1], start + 1, body, marked[1] if marked else None))
        i = end + 1
    return found


BLOCKS = [b for b in blocks(README.read_text()) if b.lang in ("python", "sh")]
NAMED = {
    match[1]: b
    for b in BLOCKS
    if b.lang == "python" and (match := re.match(r"# (\w+\.py)\n", b.text))
}


def file_name(block: Block) -> str | None:
    """The file a python block names in its first line, if any."""
    return next((name for name, named in NAMED.items() if named is block), None)


def needs_files(block: Block) -> list[str]:
    """The named python files a sh block uses."""
    return [name for name in NAMED if block.lang == "sh" and name in block.text]


def test_the_readme_has_runnable_blocks_and_few_exceptions() -> None:
    assert {b.lang for b in BLOCKS} == {"python", "sh"}
    skipped = [b for b in BLOCKS if b.not_run]
    assert len(skipped) <= 2 and all(b.not_run for b in skipped), skipped
    # Every fence is typed, so none escapes this test by accident.
    assert all(b.lang for b in blocks(README.read_text()))


def test_the_shown_environment_is_what_fake_api_prints() -> None:
    shown = next(b for b in BLOCKS if "ctlwire fake-api" in b.text and b.lang == "sh")
    names = re.findall(r"^export (\w+)=", shown.text, re.MULTILINE)
    with FakeMessagesAPI() as api:
        assert names == list(api.environment("/home"))


@pytest.fixture
def offline_env(tmp_path: Path, ctlwire_real_cli: Path) -> dict[str, str]:
    """The README's environment: `claude` on PATH and the fake API's variables."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "claude").symlink_to(ctlwire_real_cli)
    home = tmp_path / "home"
    home.mkdir()
    path = os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), os.environ["PATH"]])
    return {"PATH": path, "LANG": "C.UTF-8", "HOME": str(home)}


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.lang == "python"], ids=lambda b: b.id)
def test_python_block_runs(
    block: Block, tmp_path: Path, offline_env: dict[str, str], ctlwire_fake_api: FakeMessagesAPI
) -> None:
    if block.not_run:
        pytest.skip(block.not_run)
    work = tmp_path / "work"
    work.mkdir()
    is_test = "def test_" in block.text
    default = "test_readme_block.py" if is_test else "readme_block.py"
    script = work / (file_name(block) or default)
    script.write_text(block.text)
    env = {**offline_env, **ctlwire_fake_api.environment(offline_env["HOME"])}
    argv = [sys.executable, *(["-m", "pytest", "-q", "-p", "no:cacheprovider"] if is_test else [])]
    # A cassette test records its cassette first, then replays it (the default mode).
    runs = [["--ctlwire-record-mode=once"], []] if "ctlwire_cassette" in block.text else [[]]
    for extra in runs:
        done = subprocess.run(
            [*argv, str(script), *extra],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
    if is_test:
        assert " passed" in done.stdout
    elif "session.messages()" in block.text:  # the embedding example ran a whole turn
        assert done.stdout.splitlines()[-1] == "result success", done.stdout
        assert ctlwire_fake_api.requests, "the CLI never called the fake API"


def command_lines(block: Block) -> list[str]:
    return [
        line
        for line in block.text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def sh_lines() -> list[tuple[Block, str]]:
    out = []
    for block in BLOCKS:
        if block.lang == "sh" and not block.not_run and not needs_files(block):
            out += [(block, line) for line in command_lines(block)]
    return out


def run_bash(
    line: str, cwd: Path, env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    """One README shell line, as a user would type it, with no terminal input."""
    return subprocess.run(
        ["bash", "-c", line],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.parametrize(
    ("block", "line"),
    sh_lines(),
    ids=[f"{b.id}:{line.split('#')[0].strip()[:40]}" for b, line in sh_lines()],
)
def test_sh_line_runs(block: Block, line: str) -> None:
    expected = re.search(r"# exits (\d+)\s*$", line)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = run_bash(line, ROOT, env, timeout=60)
    want = int(expected[1]) if expected else 0
    assert done.returncode == want, done.stdout + done.stderr


@pytest.mark.parametrize(
    "block", [b for b in BLOCKS if needs_files(b) and not b.not_run], ids=lambda b: b.id
)
def test_sh_block_with_files_runs(
    block: Block, tmp_path: Path, offline_env: dict[str, str]
) -> None:
    for name in needs_files(block):
        (tmp_path / name).write_text(NAMED[name].text)
    env = {**os.environ, "PATH": offline_env["PATH"], "HOME": offline_env["HOME"]}
    for line in command_lines(block):
        done = run_bash(line, tmp_path, env, timeout=120)
        assert done.returncode == 0, f"{line}\n{done.stdout}{done.stderr}"
