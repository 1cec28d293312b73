"""``ctlwire record`` in front of the real CLI, offline: what the log keeps and what it hides."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from ctlwire.fixtures.fake_api import FakeMessagesAPI
from ctlwire.fixtures.log import read_log
from ctlwire.fixtures.real_cli import offline_environment, real_cli_argv
from ctlwire.fixtures.records import user
from ctlwire.fixtures.scrub import REDACTED, cli_slug
from ctlwire.protocol import ControlSession, HookMatcher, RequestContext
from ctlwire.transport import SubprocessTransport

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]
CTLWIRE = [sys.executable, "-m", "ctlwire.fixtures.command"]


async def test_record_scrubs_paths_and_secrets_of_a_real_session(
    tmp_path: Path, ctlwire_real_cli: Path, ctlwire_fake_api: FakeMessagesAPI, anyio_backend: str
) -> None:
    # No claude.version beside this link: the recorder has to ask the CLI itself.
    cli = tmp_path / "bin" / "claude"
    cli.parent.mkdir()
    cli.symlink_to(ctlwire_real_cli)
    work = tmp_path / "my_proj.v2" / "work_dir"  # '_' and '.' both turn into '-' in the slug
    home = tmp_path / "home"
    work.mkdir(parents=True)
    home.mkdir()
    log = tmp_path / "session.jsonl"
    replace = ["--replace", "claude-fake-1=a-model", "--replace", f"{tmp_path}=/srv/scratch"]
    argv = [*CTLWIRE, "record", "--log", str(log), *replace, "--"]
    hooked: list[dict[str, Any]] = []

    async def on_prompt(inp: dict[str, Any], tool_use_id: str | None, ctx: RequestContext) -> Any:
        hooked.append(inp)
        return {}

    transport = SubprocessTransport(
        [*argv, *real_cli_argv(cli)],
        cwd=work,
        env=offline_environment(ctlwire_fake_api.environment(str(home))),
        close_timeout=10,
    )
    hooks = {"UserPromptSubmit": [HookMatcher(None, [on_prompt])]}
    async with transport, ControlSession(transport, hooks=hooks) as session:
        await session.initialize()
        await session.send(user("Hi. My key is sk-ant-api03-abcdefghijkl, keep it safe."))
        with anyio.fail_after(30):
            async for message in session.messages():
                if message["type"] == "result":
                    break
        await session.end_input()
        with anyio.fail_after(15):
            async for _ in session.messages():
                pass

    # The live session saw the machine's paths; the log holds placeholders instead.
    assert cli_slug(str(work)) in hooked[0]["transcript_path"]
    text = log.read_text()
    assert str(tmp_path) not in text
    assert cli_slug(str(tmp_path)) not in text
    assert "/srv/project" in text
    assert "/home/user/.claude/projects/-srv-project/" in text  # the transcript path's slug
    # --replace, secrets, and the variable name that is not a secret
    assert "claude-fake-1" not in text and '"model":"a-model"' in text
    assert "sk-ant-api03" not in text and REDACTED in text
    recorded = read_log(log)
    init = next(
        r.frame
        for r in recorded.records
        if r.frame and r.frame.get("type") == "system" and r.frame.get("subtype") == "init"
    )
    assert init["apiKeySource"] == "ANTHROPIC_API_KEY"
    assert recorded.header.cli_version == init["claude_code_version"]
    assert recorded.header.argv[0] == "/srv/scratch/bin/claude"
