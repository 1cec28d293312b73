"""Session logs, the fake CLI, ctlwire replay/record/show, recording."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import one_turn_log, peer_argv, real_session, real_session_logs

from ctlwire.fixtures import records as r
from ctlwire.fixtures.command import bundled_logs, fake_cli_argv
from ctlwire.fixtures.log import LogFormatError, encode_records, read_log
from ctlwire.fixtures.recording import RecordingTransport
from ctlwire.fixtures.synthetic import LOGS, synthetic_header
from ctlwire.protocol import ControlSession, HookMatcher, RequestContext, SessionClosed
from ctlwire.transport import ProcessExited, SubprocessTransport

CTLWIRE = [sys.executable, "-m", "ctlwire.fixtures.command"]


def ctlwire(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CTLWIRE, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def lines_of(path: Path) -> list[str]:
    return path.read_text().splitlines()


# -- the log format -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "what"),
    [
        ('{"t": 0, "src": "cli"}', "exactly one of"),
        ('{"t": 0, "src": "cli", "eof": true, "exit": 0}', "found: eof, exit"),
        ('{"src": "cli", "exit": 0}', "`t`"),
        ('{"t": 0, "src": "robot", "exit": 0}', "src"),
        ("not json", "not JSON"),
        ('{"ctlwire_log": 1}', "only be the first line"),
    ],
)
def test_bad_logs_name_file_line_and_problem(tmp_path: Path, content: str, what: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"t": 0, "src": "sdk", "eof": true}\n\n' + content + "\n")
    with pytest.raises(LogFormatError) as info:
        read_log(path)
    assert str(info.value).startswith(f"{path}:3: ")
    assert what in str(info.value)


def test_a_header_is_the_first_line_only_and_a_top_level_key_only(tmp_path: Path) -> None:
    header = '{"ctlwire_log": 1, "argv": ["claude"]}\n'
    path = tmp_path / "two_headers.jsonl"
    path.write_text(header + header + '{"t": 0, "src": "sdk", "eof": true}\n')
    with pytest.raises(LogFormatError, match=r"two_headers.jsonl:2: a log header may only"):
        read_log(path)
    # The model may well write JSON with that key (working on ctlwire, say): just data.
    talk = {"type": "user", "message": {"content": [{"ctlwire_log": 1}]}, "ctlwire_log": 2}
    record = json.dumps({"t": 0, "src": "sdk", "frame": talk})
    path = tmp_path / "talks_about_logs.jsonl"
    path.write_text(record + "\n" + header.replace("1", "9") + "\n")
    with pytest.raises(LogFormatError, match=r"talks_about_logs.jsonl:2: a log header may only"):
        read_log(path)
    path.write_text(header + record + "\n")
    log = read_log(path)
    assert log.header.argv == ["claude"] and log.records[0].frame == talk


def test_unsupported_log_version(tmp_path: Path) -> None:
    path = tmp_path / "v7.jsonl"
    path.write_text('{"ctlwire_log": 7, "argv": []}\n')
    with pytest.raises(LogFormatError, match=r"v7.jsonl:1: unsupported log version 7"):
        read_log(path)


def test_shipped_synthetic_logs_are_what_the_generator_makes() -> None:
    shipped = {p.stem: p for p in bundled_logs()}
    for name, build in LOGS.items():
        assert shipped[name].read_bytes() == encode_records(synthetic_header(), build()), name
    for real in real_session_logs():
        assert real.stem in shipped


# -- ctlwire replay -------------------------------------------------------------------------


def test_replay_with_no_arguments_passes_every_shipped_log() -> None:
    out = ctlwire("replay")
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("PASS ") == len(bundled_logs()) >= 10
    assert f"{len(bundled_logs())} passed, 0 failed" in out.stdout
    # Shipped logs by their short names, not by full paths into site-packages.
    assert "PASS fixtures/logs/slow_hook.jsonl " in out.stdout
    assert str(bundled_logs()[0].parent) not in out.stdout


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_replay_passes_on_every_real_session(backend: str) -> None:
    logs = [str(p) for p in real_session_logs()]
    assert len(logs) == 4
    out = ctlwire("replay", "--backend", backend, *logs)
    assert out.returncode == 0, out.stdout + out.stderr
    for log in logs:
        assert f"PASS {log}" in out.stdout


def _corrupt(tmp_path: Path, name: str, change: Any) -> Path:
    source = lines_of(real_session(name))
    records = [json.loads(line) for line in source]
    change(records)
    path = tmp_path / f"corrupt_{name}"
    path.write_text("\n".join(json.dumps(x) for x in records) + "\n")
    return path


def _answer_of(records: list[dict[str, Any]], subtype: str) -> dict[str, Any]:
    """The SDK's answer to the first CLI request of ``subtype``."""
    rid = next(
        x["frame"]["request_id"]
        for x in records
        if x.get("src") == "cli" and x.get("frame", {}).get("request", {}).get("subtype") == subtype
    )
    return next(
        x
        for x in records
        if x.get("src") == "sdk" and x.get("frame", {}).get("response", {}).get("request_id") == rid
    )


CORRUPTIONS = {
    # An SDK answer re-targeted to an id the CLI never used.
    "retargeted answer": (
        "basic_write.jsonl",
        lambda rs: _answer_of(rs, "can_use_tool")["frame"]["response"].update(request_id="bogus"),
        ":11",
    ),
    # A dropped SDK request whose answer the CLI side still plays.
    "dropped initialize": (
        "mcp_sdk.jsonl",
        lambda rs: rs.pop(1),
        "the SDK never sent that request",
    ),
    # A dropped SDK answer: the CLI went on as if it had it.
    "dropped answer": (
        "basic_write.jsonl",
        lambda rs: rs.remove(_answer_of(rs, "hook_callback")),
        "neither answered nor cancelled, yet the CLI finished its turn",
    ),
    # An SDK answer after the CLI cancelled the request.
    "answer after cancel": (
        "slow_hook.jsonl",
        lambda rs: rs.insert(
            9,
            {"t": 2.6, "src": "sdk", "frame": r.success(rs[7]["frame"]["request_id"])},
        ),
        ":10",
    ),
}


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_corrupted_log_fails_with_a_pointer_to_the_record(tmp_path: Path, case: str) -> None:
    name, change, pointer = CORRUPTIONS[case]
    path = _corrupt(tmp_path, name, change)
    out = ctlwire("replay", "--wait", "2", str(path))
    assert out.returncode == 1, out.stdout
    assert f"FAIL {path}" in out.stdout
    assert pointer in out.stdout, out.stdout


def test_a_log_without_records_fails_at_once(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text("")  # not a log: unusable input
    out = ctlwire("replay", str(path), timeout=15)  # the replay timeout is 30 s
    assert out.returncode == 2
    assert f"ctlwire replay: {path}: empty: not a session log" in out.stderr
    assert "0 passed, 0 failed, 1 unusable" in out.stdout
    path.write_text('{"ctlwire_log": 1, "argv": []}\n')  # a log with nothing to replay
    out = ctlwire("replay", str(path), timeout=15)
    assert out.returncode == 1
    assert f"FAIL {path}" in out.stdout
    assert "no records to replay" in out.stdout


def test_unreadable_log_is_unusable_input_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "garbage.jsonl"
    path.write_text("{nope\n")
    out = ctlwire("replay", str(path), str(real_session_logs()[0]))
    assert out.returncode == 2  # unusable input outranks a pass
    assert f"ctlwire replay: {path}:1: not JSON" in out.stderr
    assert "1 passed, 0 failed, 1 unusable" in out.stdout


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_line_over_the_limit_fails_at_once_saying_how_to_raise_it(
    tmp_path: Path, backend: str
) -> None:
    log = one_turn_log(tmp_path / "big.jsonl", "x" * 5000)
    size = len(json.dumps(r.assistant("x" * 5000), separators=(",", ":")))
    started = time.monotonic()
    out = ctlwire("replay", "--backend", backend, "--max-line-bytes", "1000", str(log))
    assert time.monotonic() - started < 15  # not the 30 s replay timeout
    assert out.returncode == 1, out.stdout + out.stderr
    first_problem = out.stdout.splitlines()[1].strip()
    assert first_problem.startswith(f"{log}:5: the CLI's line is {size} bytes, over the ")
    assert "limit of 1000 bytes" in first_problem and "--max-line-bytes N" in first_problem
    raised = ctlwire("replay", "--backend", backend, "--max-line-bytes", "6000", str(log))
    assert raised.returncode == 0, raised.stdout


def test_a_line_over_the_default_32_mib_limit_fails_at_once(tmp_path: Path) -> None:
    log = one_turn_log(tmp_path / "huge.jsonl", "x" * (32 << 20))
    started = time.monotonic()
    out = ctlwire("replay", str(log))
    assert time.monotonic() - started < 20, out.stdout  # not the 30 s replay timeout
    assert out.returncode == 1
    assert f"over the transport's limit of {32 << 20} bytes" in out.stdout


# -- the fake CLI on its own ---------------------------------------------------------------


SCRIPT = [
    r.sdk(r.request("req_1_aaaa", "initialize", hooks=None)),
    r.cli(r.success("req_1_aaaa", {"commands": []})),
    r.sdk(r.user("hello")),
    r.cli(r.assistant("hi back")),
    r.cli(r.result()),
    r.sdk_eof(),
    r.cli_exit(0),
]


async def drive(argv: list[str], prompt: str) -> tuple[list[dict[str, Any]], int | None, str]:
    async with SubprocessTransport(argv) as transport, ControlSession(transport) as session:
        await session.initialize()
        await session.send(r.user(prompt))
        got = []
        try:
            async for message in session.messages():
                got.append(message)
                if message["type"] == "result":
                    await session.end_input()
        except SessionClosed:
            pass
        code = await transport.wait_exit(5)
        return got, code, "\n".join(transport.stderr_tail)


@pytest.mark.anyio
async def test_fake_cli_plays_with_live_ids(ctlwire_fake_cli: Any) -> None:
    got, code, _ = await drive(ctlwire_fake_cli.argv(SCRIPT), "hello")
    assert [m["type"] for m in got] == ["assistant", "result"]
    assert code == 0


@pytest.mark.anyio
async def test_fake_cli_strict_mismatch_shows_a_difference(ctlwire_fake_cli: Any) -> None:
    got, code, stderr = await drive(ctlwire_fake_cli.argv(SCRIPT, timeout=3), "HELLO?")
    assert code == 97
    assert "MISMATCH" in stderr and "script_1.jsonl:4" in stderr
    assert 'message.content: expected "hello", got "HELLO?"' in stderr
    assert got == []


@pytest.mark.anyio
async def test_fake_cli_loose_mode_accepts_a_foreign_payload(ctlwire_fake_cli: Any) -> None:
    got, code, _ = await drive(ctlwire_fake_cli.argv(SCRIPT, loose=True), "HELLO?")
    assert [m["type"] for m in got] == ["assistant", "result"] and code == 0


@pytest.mark.anyio
async def test_fake_cli_times_out_naming_what_it_waited_for(ctlwire_fake_cli: Any) -> None:
    argv = ctlwire_fake_cli.argv(SCRIPT, timeout=0.3)
    async with SubprocessTransport(argv) as transport, ControlSession(transport) as session:
        with pytest.raises(SessionClosed) as info:
            async for _ in session.messages():
                pass
    assert isinstance(info.value.cause, ProcessExited) and info.value.cause.returncode == 98
    assert "TIMEOUT: waited 0.3s for the SDK to send control_request initialize" in str(info.value)


def test_fake_cli_script_from_environment_and_version_flag(tmp_path: Path) -> None:
    log = r.write_log(tmp_path / "v.jsonl", SCRIPT, r.header(cli_version="9.9.9"))
    env = {**os.environ, "CTLWIRE_FAKE_SCRIPT": str(log)}
    out = subprocess.run(
        [*CTLWIRE, "fake-cli", "-v", "--model", "x"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )
    assert out.returncode == 0 and out.stdout.strip() == "9.9.9 (Claude Code)"


# -- recording ------------------------------------------------------------------------------


async def session_with_hooks(transport: Any) -> None:
    async def on_hook(inp: dict[str, Any], tool_use_id: str | None, ctx: RequestContext) -> Any:
        return {"continue": True}

    hooks = {"PreToolUse": [HookMatcher(None, [on_hook])]}
    async with ControlSession(transport, hooks=hooks) as session:
        await session.initialize()
        await session.send(r.user("secret is sk-ant-api03-abcdefgh and more"))
        await session.request({"subtype": "set_permission_mode", "mode": "plan"})
        await session.end_input()
        async for _ in session.messages():
            pass


@pytest.mark.anyio
async def test_recording_transport_log_replays(tmp_path: Path) -> None:
    log = tmp_path / "rec.jsonl"
    async with RecordingTransport(SubprocessTransport(peer_argv("echo")), log) as transport:
        await session_with_hooks(transport)
    assert (log.stat().st_mode & 0o777) == 0o600
    text = log.read_text()
    assert "sk-ant-api03" not in text and "[REDACTED]" in text
    kinds = [rec.kind for rec in read_log(log).records]
    assert kinds[-2:] == ["eof", "exit"]
    out = ctlwire("replay", str(log))
    assert out.returncode == 0, out.stdout


@pytest.mark.anyio
async def test_record_proxy_is_transparent_and_its_log_replays(tmp_path: Path) -> None:
    log = tmp_path / "proxy.jsonl"
    proxied = [*CTLWIRE, "record", "--log", str(log), "--", *peer_argv("echo")]

    async def round_trips(argv: list[str], count: int = 200) -> float:
        async with SubprocessTransport(argv) as transport, ControlSession(transport) as s:
            await s.initialize()
            started = time.perf_counter()
            for i in range(count):
                await s.request({"subtype": "ping", "i": i})
            elapsed = (time.perf_counter() - started) / count
            await session_with_hooks_tail(s)
            return elapsed

    direct = await round_trips(peer_argv("echo"))
    through = await round_trips(proxied)
    print(
        f"request round trip: direct {direct * 1e6:.0f} us, through record proxy "
        f"{through * 1e6:.0f} us (+{(through - direct) * 1e6:.0f} us per line pair)"
    )
    assert (log.stat().st_mode & 0o777) == 0o600
    records = read_log(log).records
    assert sum(1 for x in records if x.frame and x.frame.get("type") == "control_request") == 201
    assert records[-1].exit == 0
    out = ctlwire("replay", str(log))
    assert out.returncode == 0, out.stdout


async def session_with_hooks_tail(session: ControlSession) -> None:
    await session.send(r.user("bye"))
    await session.end_input()
    async for _ in session.messages():
        pass


def test_record_proxy_passes_the_exit_code_and_survives_an_unwritable_log(
    tmp_path: Path,
) -> None:
    out = subprocess.run(
        [
            *CTLWIRE,
            "record",
            "--log",
            str(tmp_path / "no" / "such" / "dir.jsonl"),
            "--",
            sys.executable,
            "-c",
            "import sys; print(sys.stdin.read().upper()); sys.exit(5)",
        ],
        input="hello\n",
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert out.returncode == 5
    assert out.stdout == "HELLO\n\n"
    assert "cannot write" in out.stderr


# -- show -----------------------------------------------------------------------------------


def test_show_joins_requests_and_marks_cancels() -> None:
    out = ctlwire("show", str(real_session("slow_hook.jsonl")))
    assert out.returncode == 0
    request_line = next(x for x in out.stdout.splitlines() if "hook_callback" in x)
    assert "[CANCELLED after 1997.7 ms, line 9]" in request_line
    assert "[success in 430.8 ms, line 3]" in out.stdout
    events = [
        json.loads(x)
        for x in ctlwire("show", "--json", str(real_session("slow_hook.jsonl"))).stdout.splitlines()
    ]
    assert [e["outcome"] for e in events if e["kind"] == "control_request"] == [
        "success",
        "cancelled",
    ]


def test_show_json_carries_payloads_as_json(tmp_path: Path) -> None:
    records = [
        r.cli(r.request("q", "can_use_tool", tool_name="Bash", input={"command": "ls"})),
        r.sdk(r.success("q", {"behavior": "allow"})),
        r.cli_line("[SandboxDebug] hi"),
        r.cli_exit(0),
    ]
    log = r.write_log(tmp_path / "p.jsonl", records)
    out = ctlwire("show", "--json", str(log))
    payloads = [json.loads(x)["payload"] for x in out.stdout.splitlines()]
    assert payloads == [records[0].frame, records[1].frame, "[SandboxDebug] hi", 0]


def test_show_into_a_closed_pipe_exits_quietly() -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # like `| head -1` once head has its line: every write fails
    try:
        out = subprocess.run(
            [*CTLWIRE, "show", "--json", str(real_session("slow_hook.jsonl"))],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)
    assert (out.returncode, out.stderr) == (0, "")


def test_show_marks_unanswered_requests(tmp_path: Path) -> None:
    log = r.write_log(
        tmp_path / "u.jsonl", [r.cli(r.request("lost", "can_use_tool", tool_name="Bash"))]
    )
    assert "[UNANSWERED]" in ctlwire("show", str(log)).stdout


# -- the pytest plugin ----------------------------------------------------------------------


def test_pytest_plugin_fixtures(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("")
    pytester.makepyfile(
        """
        import subprocess
        from ctlwire.fixtures import records as r

        def test_inline_script(ctlwire_fake_cli):
            script = [r.cli(r.assistant("hi")), r.sdk_eof(), r.cli_exit(3)]
            exe = ctlwire_fake_cli.executable(script)
            out = subprocess.run([str(exe), "--any", "flags"], input=b"", capture_output=True)
            assert out.returncode == 3
            assert b'"hi"' in out.stdout

        def test_bundled(ctlwire_logs, ctlwire_fake_cli):
            assert len(ctlwire_logs) >= 10
            argv = ctlwire_fake_cli.argv(ctlwire_logs[0], loose=True)
            assert argv[-1] == "--loose"
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_fake_cli_argv_runs_this_installation() -> None:
    assert fake_cli_argv("x.jsonl")[:4] == [*CTLWIRE, "fake-cli"]
