"""Cassettes, the way a test author meets them: inner pytest runs of generated test files.

The official SDK records once against the real CLI (offline, with the fake Messages API),
replays under ``--ctlwire-record-mode=none`` on asyncio and trio, two xdist workers at
a time, and a changed prompt or permission answer fails the test with the difference.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from ctlwire.fixtures import records as r
from ctlwire.fixtures.cassette import cassette_path, why_unclean
from ctlwire.fixtures.fake_cli import EXIT_TIMEOUT, Player
from ctlwire.fixtures.log import LogHeader, Record, SessionLog, read_log
from ctlwire.fixtures.matcher import VOLATILE_KEYS, Mismatch, ScriptMatcher
from ctlwire.fixtures.real_cli import cli_version, find_real_cli

SDK_TEST = """
import json
import os

import anyio
import pytest
from claude_agent_sdk import (
    ClaudeAgentOptions,
    ClaudeSDKClient,
    PermissionResultAllow,
    PermissionResultDeny,
    ResultMessage,
)

from ctlwire.fixtures.fake_api import FakeMessagesAPI

PROMPT = os.environ.get("CASSETTE_PROMPT", "Please write the file.")
ANSWER = os.environ.get("CASSETTE_ANSWER", "allow")
SWALLOW = os.environ.get("CASSETTE_SWALLOW", "")


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_write_turn(ctlwire_cassette, tmp_path, backend):
    work, home = tmp_path / "work", tmp_path / "home"
    work.mkdir()
    home.mkdir()
    asked = []

    async def can_use_tool(name, tool_input, context):
        asked.append(name)
        if ANSWER == "allow":
            return PermissionResultAllow(updated_input=tool_input)
        return PermissionResultDeny(message="not today")

    async def session():
        spec = {"tool": "Write", "input": {"file_path": str(work / "hello.txt"), "content": "hi"}}
        with FakeMessagesAPI() as api:  # used when recording; harmless in replay
            options = ClaudeAgentOptions(
                cli_path=ctlwire_cassette.cli_path,
                cwd=work,
                env=api.environment(str(home)),
                can_use_tool=can_use_tool,
            )
            async with ClaudeSDKClient(options) as client:
                await client.query(f"{PROMPT}\\nSCRIPT:{json.dumps(spec)}")
                return [m async for m in client.receive_response()]

    try:
        messages = anyio.run(session, backend=backend)
    except Exception:
        if SWALLOW == backend:  # a test that hides the SDK's error must fail all the same
            return
        raise
    assert asked == ["Write"]
    assert isinstance(messages[-1], ResultMessage) and messages[-1].subtype == "success"
"""


def cassette_line(path: Path, kind: str) -> int:
    """The line of the first sdk frame of type ``kind`` in a cassette."""
    log = read_log(path)
    for index, record in enumerate(log.records):
        if record.src == "sdk" and record.frame and record.frame["type"] == kind:
            return log.line_of(index)
    raise AssertionError(f"no sdk {kind} in {path}")


@pytest.mark.timeout(240)
def test_record_once_then_replay_and_a_change_fails_with_its_difference(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_agent=SDK_TEST)
    folder = pytester.path / "cassettes" / "test_agent"
    cassettes = {b: folder / f"test_write_turn[{b}].jsonl" for b in ("asyncio", "trio")}

    # Record both backends at once on two xdist workers (real CLI, fake API).
    run = pytester.runpytest_subprocess("-n", "2", "--ctlwire-record-mode=once", timeout=120)
    run.assert_outcomes(passed=2)
    assert sorted(folder.iterdir()) == sorted(cassettes.values())  # no temp files left
    recorded = {b: p.read_bytes() for b, p in cassettes.items()}
    for path in cassettes.values():
        text = path.read_text()
        assert str(pytester.path) not in text and "pytest-of-" not in text, path
        assert "/srv/project/hello.txt" in text and '"apiKeySource":"ANTHROPIC_API_KEY"' in text
        assert read_log(path).header.cli_version == cli_version(find_real_cli())

    # Replay, two workers again; nothing is re-recorded.
    run = pytester.runpytest_subprocess("-n", "2", "--ctlwire-record-mode=none", timeout=120)
    run.assert_outcomes(passed=2)
    assert {b: p.read_bytes() for b, p in cassettes.items()} == recorded

    # A changed prompt fails both tests, also the one that swallows the SDK's error.
    monkeypatch.setenv("CASSETTE_PROMPT", "Please write another file.")
    monkeypatch.setenv("CASSETTE_SWALLOW", "trio")
    run = pytester.runpytest_subprocess("-rN", timeout=120)  # no summary: count reports only
    run.assert_outcomes(failed=2)
    out = run.stdout.str()
    for path in cassettes.values():
        line = cassette_line(path, "user")
        assert f"{path}:{line}: the SDK's user differs from the record" in out
    assert out.count("did not replay:") == 2  # the fixture's text, once per test
    assert 'message.content: expected "Please write the file.' in out
    assert "--ctlwire-record-mode=all" in out

    # A changed permission answer: deny instead of allow.
    monkeypatch.delenv("CASSETTE_PROMPT")
    monkeypatch.setenv("CASSETTE_ANSWER", "deny")
    run = pytester.runpytest_subprocess("-k", "asyncio", timeout=120)
    run.assert_outcomes(failed=1)
    line = cassette_line(cassettes["asyncio"], "control_response")
    out = run.stdout.str()
    assert f"{cassettes['asyncio']}:{line}: the SDK's control_response success for" in out
    assert 'response.response.behavior: expected "allow", got "deny"' in out
    assert {b: p.read_bytes() for b, p in cassettes.items()} == recorded


OWN_TEST = """
import pytest
from ctlwire.fixtures.real_cli import offline_environment
from ctlwire.protocol import ControlSession
from ctlwire.transport import SubprocessTransport


@pytest.mark.anyio
@pytest.mark.ctlwire_cassette(name="initialize_only")
async def test_ctlwire_session(ctlwire_cassette, ctlwire_fake_api, tmp_path):
    env = offline_environment(ctlwire_fake_api.environment(str(tmp_path)))
    transport = SubprocessTransport(ctlwire_cassette.argv, cwd=tmp_path, env=env)
    async with transport:
        async with ControlSession(transport) as session:
            await session.initialize()
            await session.end_input()
            async for _ in session.messages():
                pass


class TestGroup:
    def test_never_runs_the_cli(self, ctlwire_cassette):
        assert ctlwire_cassette.cli_path.exists()
"""


@pytest.mark.timeout(120)
def test_own_transport_named_cassette_and_a_discarded_recording(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_own=OWN_TEST)
    named = pytester.path / "cassettes" / "test_own" / "initialize_only.jsonl"
    # anyio runs the async test on asyncio and trio: both share the one named cassette
    run = pytester.runpytest_subprocess("--ctlwire-record-mode=all", timeout=60)
    run.assert_outcomes(passed=2, failed=1)
    run.stdout.fnmatch_lines(
        ["*recording was discarded*TestGroup.test_never_runs_the_cli.jsonl not written*never run*"]
    )
    assert named.is_file()
    assert sorted(p.name for p in named.parent.iterdir()) == [named.name]
    run = pytester.runpytest_subprocess(timeout=60)
    run.assert_outcomes(passed=2, errors=1)  # the discarded one was never written
    run.stdout.fnmatch_lines(
        [
            "*no cassette*TestGroup.test_never_runs_the_cli.jsonl; record it with:*"
            "test_own.py::TestGroup::test_never_runs_the_cli --ctlwire-record-mode=once)"
        ]
    )


def test_cassette_names_and_what_counts_as_clean(tmp_path: Path) -> None:
    test_file = tmp_path / "test_mod.py"
    assert cassette_path(test_file, "test_x[a/b-1]") == (
        tmp_path / "cassettes" / "test_mod" / "test_x[a_b-1].jsonl"
    )
    assert cassette_path(test_file, "test_x", "mine").name == "mine.jsonl"

    def log(*records: Record) -> SessionLog:
        return SessionLog(LogHeader(), list(records), list(range(1, len(records) + 1)))

    assert why_unclean(log()) is not None
    assert why_unclean(log(r.sdk_eof(), r.cli_exit(0))) is None
    assert "code 1" in str(why_unclean(log(r.sdk_eof(), r.cli_exit(1))))
    assert "never closed" in str(why_unclean(log(r.cli_exit(0))))
    assert "no exit" in str(why_unclean(log(r.sdk_eof())))


def test_ignored_keys_may_differ() -> None:
    recorded = r.user("hello")
    live = {**recorded, "session_id": "another"}
    log = SessionLog(LogHeader(), [r.sdk(recorded)], [1])
    with pytest.raises(Mismatch, match="session_id"):
        ScriptMatcher(log).accept(live)
    matcher = ScriptMatcher(log, volatile=VOLATILE_KEYS | {"session_id"})
    assert matcher.accept(live) == 0


def test_a_replay_timeout_is_reported_with_the_line_it_waited_for(tmp_path: Path) -> None:
    log_path = r.write_log(
        tmp_path / "c.jsonl", [r.sdk(r.user("hi")), r.cli(r.result()), r.sdk_eof(), r.cli_exit(0)]
    )
    report = tmp_path / "report.txt"
    read_end, write_end = os.pipe()  # the SDK's stdin: open, and silent
    try:
        player = Player(
            read_log(log_path),
            timeout=0.2,
            stdin_fd=read_end,
            stdout=io.BytesIO(),
            stderr=io.StringIO(),
            report=str(report),
        )
        assert player.run() == EXIT_TIMEOUT
    finally:
        os.close(write_end)  # the player's reader thread sees EOF and ends
        os.close(read_end)
    assert report.read_text() == (f"TIMEOUT: waited 0.2s for the SDK to send user ({log_path}:2)\n")


REFUSED_TEST = """
import subprocess


def test_cli_refuses(ctlwire_cassette):
    subprocess.run([str(ctlwire_cassette.cli_path)], input=b"", capture_output=True, check=False)
"""

REFUSING_CLI = """#!/bin/sh
for i in 1 2 3 4 5 6 7 8 9; do echo "starting up, step $i" >&2; done
echo "Error: --dangerously-skip-permissions cannot be used with root/sudo privileges" >&2
exit 1
"""


@pytest.mark.timeout(120)
def test_a_discarded_recording_leads_with_the_clis_last_stderr_lines(
    pytester: pytest.Pytester,
) -> None:
    cli = pytester.path / "refusing_cli"
    cli.write_text(REFUSING_CLI)
    cli.chmod(0o755)
    pytester.makepyfile(test_refused=REFUSED_TEST)
    run = pytester.runpytest_subprocess(
        "--ctlwire-record-mode=once", f"--ctlwire-cli={cli}", timeout=60
    )
    run.assert_outcomes(failed=1)
    lines = run.stdout.lines
    title = next(i for i, line in enumerate(lines) if " test_cli_refuses " in line)
    failure = lines[title + 1 :]  # the failure's text, right under its title
    assert failure[0].startswith("ctlwire cassette: the recording was discarded, "), failure
    assert failure[0].endswith("not written: the CLI exited with code 1, its stderr ending:")
    assert [line.strip() for line in failure[1:6]] == [
        "starting up, step 6",
        "starting up, step 7",
        "starting up, step 8",
        "starting up, step 9",
        "Error: --dangerously-skip-permissions cannot be used with root/sudo privileges",
    ]
