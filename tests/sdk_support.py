"""What the ctlwire.sdk tests share: the SDK versions they run on, and a CLI path."""

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


# Set for a pytest run in a fresh interpreter on another SDK version (test_sdk_latest.py).
EXPECTED_VERSION = "CTLWIRE_EXPECT_SDK"


def sdk_python(version: str, script: Path | str, *args: str, timeout: float = 120) -> str:
    """Run ``script`` (or ``-m module``) in a fresh interpreter that imports
    claude-agent-sdk ``version``; its stdout (fails the test, with the output's end, if
    it exits with an error)."""
    folder = SDK_VERSIONS[version]
    env = {**os.environ, EXPECTED_VERSION: version}
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
        cwd=ROOT,
        check=False,
    )
    assert out.returncode == 0, (out.stdout + out.stderr)[-6000:]
    return out.stdout


def executable(folder: Path, argv: list[str]) -> str:
    """A CLI path for the SDK that runs ``argv`` whatever flags the SDK adds."""
    path = folder / f"cli_{len(list(folder.glob('cli_*')))}"
    path.write_text("#!/bin/sh\nexec " + " ".join(shlex.quote(a) for a in argv) + "\n")
    path.chmod(0o755)
    return str(path)
