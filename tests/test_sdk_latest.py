"""The ctlwire.sdk tests again, in a fresh interpreter on the newest claude-agent-sdk
(and the real CLI it bundles), so both supported versions run in ``make test``."""

from __future__ import annotations

import os

import claude_agent_sdk
import pytest
from helpers import first_run_only
from sdk_support import EXPECTED_VERSION, LATEST, PINNED, ROOT, sdk_python

BEHAVIOUR = ["tests/test_sdk_transport.py", "tests/test_sdk_real_cli.py"]


def test_this_run_has_the_sdk_it_expects() -> None:
    assert claude_agent_sdk.__version__ == os.environ.get(EXPECTED_VERSION, PINNED)


@first_run_only
@pytest.mark.timeout(400)
def test_the_newest_sdk_passes_the_behaviour_tests() -> None:
    if os.environ.get(EXPECTED_VERSION):
        pytest.skip("already inside the run on another SDK version")
    checks = ["tests/test_sdk_latest.py::test_this_run_has_the_sdk_it_expects", *BEHAVIOUR]
    out = sdk_python(
        LATEST,
        "-m",
        "pytest",
        "-p",
        "no:xdist",
        "-q",
        "--rootdir",
        str(ROOT),
        *checks,
        timeout=380,
    )
    assert " passed" in out and "skipped" not in out, out[-2000:]
