"""ctlwire.sdk starts the CLI exactly as the official SDK would, for every SDK version
it supports: compared option by option with what the SDK hands to ``open_process``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from claude_agent_sdk import ClaudeAgentOptions, CLIConnectionError
from claude_agent_sdk._internal.transport.subprocess_cli import SubprocessCLITransport
from sdk_support import SDK_VERSIONS, sdk_python

from ctlwire.sdk import build_launch

PROBE = Path(__file__).with_name("sdk_launch_probe.py")


@pytest.mark.parametrize("version", sorted(SDK_VERSIONS))
def test_same_command_env_and_folder_as_the_sdk(version: str, tmp_path: Path) -> None:
    report = json.loads(sdk_python(version, PROBE, str(tmp_path)))
    assert report["version"] == version
    assert report["uncovered"] == [], "options of this SDK that no case checks"
    assert report["unknown"] == [], "cases for options this SDK does not have"
    assert report["compared"] >= 60 and report["refused"] == 0
    assert report["differences"] == []


@pytest.mark.anyio
async def test_an_sdk_without_the_builder_gets_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delattr(SubprocessCLITransport, "_build_command")
    with pytest.raises(CLIConnectionError, match=r"no longer has SubprocessCLITransport\._build"):
        await build_launch("hi", ClaudeAgentOptions(cli_path="/bin/true"))


@pytest.mark.anyio
async def test_the_builders_own_errors_reach_the_caller(tmp_path: Path) -> None:
    options = ClaudeAgentOptions(
        cli_path="/bin/true", sandbox={"enabled": True}, settings=str(tmp_path / "missing.json")
    )
    with pytest.raises(CLIConnectionError, match="Failed to load settings"):
        await build_launch("hi", options)
