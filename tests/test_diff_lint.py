"""`ctlwire diff` and `ctlwire lint`, run as commands on shipped and corrupted logs.

`tests/data/cli-2.1.332/` holds the scenarios of test_real_cli.py recorded with Claude Code
2.1.332 (claude-agent-sdk 0.2.189; paths replaced as in the shipped `real_*.jsonl`), and
`tests/data/cli-2.1.330/` a second 2.1.330 run of one scenario.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import SHIPPED_LOGS, TESTS

DATA = TESTS / "data"
NEW = DATA / "cli-2.1.332"
SCENARIOS = sorted(p.name for p in NEW.glob("real_*.jsonl"))


def ctlwire(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ctlwire", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# -- diff ---------------------------------------------------------------------------------


def test_every_scenario_was_recorded_with_the_new_cli() -> None:
    assert len(SCENARIOS) == 7
    for name in SCENARIOS:
        assert records(NEW / name)[0]["cli_version"].startswith("2.1.332")
        assert (SHIPPED_LOGS / name).is_file()
    for log in DATA.glob("*/*.jsonl"):  # machine paths replaced, the CLI's slugs too
        text = log.read_text()
        assert "pytest-of" not in text and "/tmp/rec" not in text and "-tmp-" not in text, log


@pytest.mark.parametrize("name", SCENARIOS)
def test_diff_reports_what_2_1_332_added_to_init(name: str) -> None:
    done = ctlwire("diff", "--json", SHIPPED_LOGS / name, NEW / name)
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    changed = {(c["src"], c["signature"]): c for c in report["frames_changed"]}
    # Exactly the init changes: the initialize answer, and the system/init message of a
    # session that ran a turn.
    has_init = any(r.get("frame", {}).get("subtype") == "init" for r in records(NEW / name))
    answer = ("cli", "control_response/initialize/success")
    assert set(changed) == {answer, *([("cli", "system/init")] if has_init else [])}
    for (_, signature), change in changed.items():
        prefix = "response.response." if signature == answer[1] else ""
        assert change["keys_added"] == {f"{prefix}sandbox_enabled": ["bool"]}
        assert change["values_added"] == {
            f"{prefix}capabilities[]": ["mcp_call_soft_error_result_v1"]
        }
        assert set(change) == {"src", "signature", "line_a", "line_b", "pairs"} | {
            "keys_added",
            "values_added",
        }
    for key in ("frames_added", "frames_removed", "message_types_added"):
        assert report[key] == [], key
    assert report["control_subtypes_added"] == report["control_subtypes_removed"] == []
    assert report["exit"] is None and report["cli_version"] is None


def test_diff_report_is_readable_and_versions_are_opt_in() -> None:
    a, b = SHIPPED_LOGS / "real_write_turn.jsonl", NEW / "real_write_turn.jsonl"
    text = ctlwire("diff", a, b).stdout
    assert "+ key sandbox_enabled (bool)" in text
    assert '+ capabilities[] "mcp_call_soft_error_result_v1"' in text
    assert "version" not in text
    with_versions = ctlwire("diff", "--versions", a, b).stdout
    assert "cli_version: 2.1.330 -> 2.1.332" in with_versions
    assert "claude_code_version: 2.1.330 -> 2.1.332" in with_versions


def test_diff_of_two_runs_of_one_scenario_is_same() -> None:
    rerun = DATA / "cli-2.1.330" / "real_write_turn.jsonl"
    shipped = SHIPPED_LOGS / "real_write_turn.jsonl"
    assert rerun.read_text() != shipped.read_text()  # ids, times and pids all differ
    done = ctlwire("diff", shipped, rerun)
    assert (done.returncode, done.stdout.split(":")[0]) == (0, "same"), done.stdout
    assert ctlwire("diff", "--json", shipped, shipped).returncode == 0


def test_diff_sees_frames_types_and_subtypes_come_and_go(tmp_path: Path) -> None:
    base = records(SHIPPED_LOGS / "real_offline_control_requests.jsonl")
    kept = [r for r in base if r.get("frame", {}).get("request", {}).get("subtype") != "mcp_status"]
    mcp_id = next(
        r["frame"]["request_id"]
        for r in base
        if r.get("frame", {}).get("request", {}).get("subtype") == "mcp_status"
    )
    kept = [r for r in kept if r.get("frame", {}).get("response", {}).get("request_id") != mcp_id]
    new = {"t": 9.0, "src": "cli", "frame": {"type": "brand_new", "subtype": "x"}}
    kept.insert(-1, new)
    kept[-1]["exit"] = 3
    b = write(tmp_path / "b.jsonl", kept)
    done = ctlwire("diff", "--json", SHIPPED_LOGS / "real_offline_control_requests.jsonl", b)
    report = json.loads(done.stdout)
    assert done.returncode == 1
    assert report["control_subtypes_removed"] == ["sdk mcp_status"]
    assert report["message_types_added"] == ["cli brand_new/x"]
    assert {"src": "cli", "signature": "brand_new/x", "line": kept.index(new) + 1} in report[
        "frames_added"
    ]
    removed = {(f["src"], f["signature"]) for f in report["frames_removed"]}
    assert removed == {
        ("sdk", "control_request/mcp_status"),
        ("cli", "control_response/mcp_status/success"),
    }
    assert report["exit"] == {"a": 0, "b": 3}


def test_diff_sees_a_key_change_type(tmp_path: Path) -> None:
    rows = records(SHIPPED_LOGS / "real_write_turn.jsonl")
    for row in rows:
        if row.get("frame", {}).get("type") == "result":
            row["frame"]["num_turns"] = "two"
            del row["frame"]["is_error"]
    done = ctlwire("diff", SHIPPED_LOGS / "real_write_turn.jsonl", write(tmp_path / "b", rows))
    assert done.returncode == 1
    assert "~ key num_turns: number -> string" in done.stdout
    assert "- key is_error (bool)" in done.stdout


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (None, "cannot read"),
        ("", "empty: not a session log"),
        ("\n  \n", "empty: not a session log"),
        ("this is not json\n", "not JSON"),
        ('{"ctlwire_log": 1, "argv": []}\n', "no frame records"),
    ],
)
def test_diff_exits_2_on_unusable_input(tmp_path: Path, content: str | None, why: str) -> None:
    bad = tmp_path / "bad.jsonl"
    if content is not None:
        bad.write_text(content)
    done = ctlwire("diff", SHIPPED_LOGS / "real_write_turn.jsonl", bad)
    assert done.returncode == 2
    assert str(bad) in done.stderr and why in done.stderr, done.stderr


# -- lint ---------------------------------------------------------------------------------


def test_every_shipped_log_lints_clean() -> None:
    logs = sorted(SHIPPED_LOGS.glob("*.jsonl")) + sorted(DATA.glob("*/*.jsonl"))
    done = ctlwire("lint", *logs)
    assert (done.returncode, done.stdout) == (0, ""), done.stdout


def _slow_hook() -> tuple[list[dict[str, Any]], str]:
    rows = records(SHIPPED_LOGS / "real_slow_hook_is_cancelled_by_the_cli.jsonl")
    cancel = next(r for r in rows if r.get("frame", {}).get("type") == "control_cancel_request")
    return rows, cancel["frame"]["request_id"]


def _answer(rid: str) -> dict[str, Any]:
    body = {"subtype": "success", "request_id": rid, "response": {}}
    return {"t": 9.0, "src": "sdk", "frame": {"type": "control_response", "response": body}}


def lint_lines(tmp_path: Path, rows: list[dict[str, Any]] | str) -> list[str]:
    path = tmp_path / "bad.jsonl"
    if isinstance(rows, str):
        path.write_text(rows)
    else:
        write(path, rows)
    done = ctlwire("lint", path)
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert all(line.startswith(f"{path}:") for line in lines), lines
    return [line.removeprefix(f"{path}:") for line in lines]


def test_lint_answer_after_cancel_and_unknown_and_twice(tmp_path: Path) -> None:
    rows, cancelled = _slow_hook()
    first = next(
        i
        for i, r in enumerate(rows)
        if r.get("src") == "cli" and r.get("frame", {}).get("type") == "control_response"
    )
    rows.insert(first + 1, rows[first])  # rows[i] is on line i + 1 (rows[0]: the header)
    at = next(
        i for i, r in enumerate(rows) if r.get("frame", {}).get("type") == "control_cancel_request"
    )
    rows.insert(at + 1, _answer(cancelled))
    rows.insert(at + 2, _answer("nobody-asked"))
    problems = lint_lines(tmp_path, rows)
    assert any(p.startswith(f"{first + 2}: ") and "answered again" in p for p in problems)
    assert any(p.startswith(f"{at + 2}: ") and "after its cancel" in p for p in problems), problems
    assert any(p.startswith(f"{at + 3}: ") and "unknown id nobody-asked" in p for p in problems)


def test_lint_missing_exit_and_malformed_lines(tmp_path: Path) -> None:
    rows, _ = _slow_hook()
    text = "".join(json.dumps(r) + "\n" for r in rows if "exit" not in r)
    text = text.replace("\n", "\nnot a record\n", 1)  # line 2
    text += '{"t": 1, "src": "cli"}\n'
    problems = lint_lines(tmp_path, text)
    assert problems[0].startswith("2: not JSON"), problems
    assert any("exactly one of" in p for p in problems)
    assert any("no exit record" in p for p in problems)


def test_lint_request_left_open(tmp_path: Path) -> None:
    rows = records(SHIPPED_LOGS / "real_write_turn.jsonl")
    asked = next(
        r for r in rows if r.get("frame", {}).get("request", {}).get("subtype") == "can_use_tool"
    )
    rid = asked["frame"]["request_id"]
    rows = [r for r in rows if r.get("frame", {}).get("response", {}).get("request_id") != rid]
    line = rows.index(asked) + 1
    problems = lint_lines(tmp_path, rows)
    assert problems == [
        f"{line}: cli request {rid} (can_use_tool) is left open, yet the CLI "
        "finished its turn before stdin closed"
    ]
    no_eof = [r for r in rows if not r.get("eof")]
    assert any("stdin never closed" in p for p in lint_lines(tmp_path, no_eof))


def test_lint_accepts_a_request_left_hanging_after_stdin_closed() -> None:
    log = SHIPPED_LOGS / "real_stdin_closed_early_with_a_hook_pending.jsonl"
    hooks = [
        r
        for r in records(log)[1:]
        if r.get("frame", {}).get("type") == "control_request"
        and r["frame"]["request"]["subtype"] == "hook_callback"
    ]
    answered = {
        r["frame"]["response"]["request_id"]
        for r in records(log)[1:]
        if r.get("frame", {}).get("type") == "control_response"
    }
    assert any(h["frame"]["request_id"] not in answered for h in hooks)  # one hangs
    assert ctlwire("lint", log).returncode == 0


def test_lint_unreadable_file_exits_2(tmp_path: Path) -> None:
    done = ctlwire("lint", tmp_path / "missing.jsonl")
    assert done.returncode == 2 and "cannot read" in done.stdout


@pytest.mark.parametrize("command", ["lint", "show"])
def test_an_empty_file_is_not_a_log(tmp_path: Path, command: str) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    done = ctlwire(command, empty)
    assert done.returncode == 2
    said = done.stdout + done.stderr
    assert f"{empty}: empty: not a session log" in said and ":0:" not in said, said


def test_lint_of_a_file_without_one_record(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.jsonl", [])
    path.write_text("not a record\nnor this\n")  # no valid line at all: not a log
    done = ctlwire("lint", path)
    assert done.returncode == 2, done.stdout
    assert done.stdout == (
        f"{path}: not a session log: no line is a valid header or record "
        "(line 1: not JSON: JSON is malformed: invalid character (byte 4))\n"
    )
    # A header alone is a log, with nothing in it: a problem of the file, not of line 0.
    assert lint_lines(tmp_path, '{"ctlwire_log": 1, "argv": []}\n') == [" no records"]


def test_lint_lists_problems_in_line_order_on_a_truncated_log(tmp_path: Path) -> None:
    rows = records(SHIPPED_LOGS / "real_write_turn.jsonl")
    asked = next(
        i for i, r in enumerate(rows) if r.get("frame", {}).get("type") == "control_request"
    )
    text = "".join(json.dumps(r) + "\n" for r in rows[: asked + 1])
    text += json.dumps(rows[asked + 1])[:40] + "\n"  # the log ends mid-line
    problems = lint_lines(tmp_path, text)
    numbers = [int(p.split(":", 1)[0]) for p in problems]
    assert numbers == sorted(numbers) and asked + 2 in numbers, problems
    assert any("not JSON" in p for p in problems) and len(problems) >= 3, problems


def test_unreadable_files_are_not_reported_at_line_0(tmp_path: Path) -> None:
    for args in (["lint", tmp_path], ["show", tmp_path], ["replay", tmp_path]):
        done = ctlwire(*args)
        said = done.stdout + done.stderr
        assert done.returncode == 2 and f"{tmp_path}: cannot read: Is a directory" in said
        assert ":0:" not in said, said
