"""What the ctlwire.sdk tests share: the SDK versions they run against, and /proc."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
PINNED = "0.2.187"
# The newest version the registry served when last checked: `make sdk-latest` puts it in
# build/sdk-latest, which a fresh interpreter puts first on its PYTHONPATH.
LATEST = "0.2.189"
SDK_VERSIONS = {PINNED: None, LATEST: ROOT / "build" / "sdk-latest"}


def sdk_python(version: str, script: Path | str, *args: str, timeout: float = 120) -> str:
    """Run ``script`` in a fresh interpreter that imports claude-agent-sdk ``version``;
    its stdout (fails the test, with stderr, if it exits with an error)."""
    folder = SDK_VERSIONS[version]
    env = dict(os.environ)
    if folder is not None:
        if not (folder / "claude_agent_sdk").is_dir():
            pytest.fail(f"claude-agent-sdk {version} is not in {folder}: run `make sdk-latest`")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(folder), env.get("PYTHONPATH")]))
    out = subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    return out.stdout


def descendants(root: int | None = None) -> set[int]:
    """Every process below ``root`` (default: this one), found by walking /proc."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            parents.setdefault(ppid, []).append(int(entry))
    found: set[int] = set()
    todo = [os.getpid() if root is None else root]
    while todo:
        for child in parents.get(todo.pop(), ()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def executable(folder: Path, argv: list[str]) -> str:
    """A CLI path for the SDK that runs ``argv`` whatever flags the SDK adds."""
    path = folder / f"cli_{len(list(folder.glob('cli_*')))}"
    path.write_text("#!/bin/sh\nexec " + " ".join(shlex.quote(a) for a in argv) + "\n")
    path.chmod(0o755)
    return str(path)
