"""`ctlwire conform`: the catalog judges SDKs by the dispatcher rules, and can fail each.

Each SDK's whole catalog runs once per test (through the real command, as a user runs
it) and the test compares every scenario's verdict with the expected one. ctlwire's own
driver must pass everything on asyncio and trio; the official SDKs' known failures are
asserted as known, with the reason, so a change in an SDK shows up here. A small SDK
written for the tests (conform_naive_driver.py) passes the catalog when it has no bug,
and fails each scenario when given the bug the scenario is about.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from helpers import STRIPPED, TESTS, first_run_only

from ctlwire.fixtures.conform.catalog import BY_NAME, CATALOG
from ctlwire.fixtures.conform.runner import judge, run_catalog, run_driver

ROOT = TESTS.parent
NAIVE = [sys.executable, str(TESTS / "conform_naive_driver.py")]

# Each bug of the naive SDK, and the scenarios it must fail.
BREAKS = {
    "answer-after-cancel": [
        "cancel_while_the_handler_runs",
        "cancel_before_the_handler_starts",
        "no_answer_after_the_hook_timeout",
        "no_answer_after_cancel_behind_a_full_pipe",
        "interrupt_cancels_the_pending_hook",
    ],
    "error-on-cancel": [
        "cancel_after_the_answer_is_a_no_op",
        "cancel_for_an_unknown_id_is_a_no_op",
    ],
    "twice": ["duplicate_request_id_is_answered_once"],
    "silent-on-unknown": ["unknown_control_subtype_gets_an_error"],
    "raise-kills": ["handler_error_becomes_an_error_answer"],
    "init-first": ["request_served_before_initialize_is_answered"],
    "trusting": ["error_answer_fails_our_request", "malformed_answer_fails_our_request_at_once"],
    "forget-pending": ["cli_dies_with_a_request_pending"],
    "ignore-write-errors": ["cli_closes_stdin_early"],
    "bounded-queue": ["twenty_thousand_unread_messages_ahead_of_a_hook"],
    "serial": ["two_hundred_concurrent_hooks"],
    "drop-surrogates": ["lone_surrogates_are_delivered_and_echoed"],
    "raw-types": ["escaped_type_names_and_spacing"],
    "small-lines": ["eight_mib_line"],
    "fragile": [
        "malformed_control_frames",
        "non_json_lines_are_skipped",
        "a_noisy_recorded_session_plays_through",
    ],
    "keep-alive-as-message": ["keep_alive_is_not_a_message"],
    "drop-unknown-types": ["unknown_message_types_are_passed_through"],
}

# Known failures of the official SDKs: scenario -> a piece of the reason.
CANCELLED_C1 = "the SDK answered c1 after the CLI cancelled it"
ABORT_ANSWER = '"subtype":"error","request_id":"c1","error":"aborted by the CLI"'

PYTHON_KNOWN = {
    "duplicate_request_id_is_answered_once": "rule 1: the SDK answered d1 twice",
    "malformed_answer_fails_our_request_at_once": "rule 8: set_permission_mode succeeded",
    "cli_dies_with_a_request_pending": "rule 4: the request's error does not say why",
    "cli_closes_stdin_early": "rule 9: the CLI closed its stdin and then asked a hook",
    "twenty_thousand_unread_messages_ahead_of_a_hook": "rule 5: the SDK stopped reading",
    "eight_mib_line": "maximum buffer size of 1048576 bytes",
    "malformed_control_frames": "KeyError: 'request_id'",
    "non_json_lines_are_skipped": "rule 7: no answer to request c1",
    "unknown_message_types_are_passed_through": "rule 5: the unknown message type was dropped",
    "a_noisy_recorded_session_plays_through": "Missing required field in rate_limit_event",
}
TYPESCRIPT_KNOWN = {
    # The abort finding: a callback that rejects on its abort signal is answered anyway.
    "cancel_while_the_handler_runs": ABORT_ANSWER,
    "interrupt_cancels_the_pending_hook": ABORT_ANSWER,
    "cancel_before_the_handler_starts": f"rule 2: {CANCELLED_C1}",
    "no_answer_after_the_hook_timeout": f"rule 2: {CANCELLED_C1}",
    "no_answer_after_cancel_behind_a_full_pipe": f"rule 9: {CANCELLED_C1}",
    "escaped_type_names_and_spacing": "rule 8: the SDK answered x2 after the CLI cancelled it",
    "malformed_answer_fails_our_request_at_once": "rule 8: set_permission_mode succeeded",
    "cli_closes_stdin_early": "rule 9: the CLI closed its stdin and then asked a hook",
    "malformed_control_frames": "rule 7: the SDK wrote a control_response without a request_id",
}


def conform(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ctlwire.fixtures.command", "conform", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
        env={**os.environ, **(env or {})},
    )


def scoreboard(sdk: str) -> tuple[dict[str, Any], int]:
    done = conform("--sdk", sdk, "--json")
    assert done.returncode in (0, 1), done.stderr
    return json.loads(done.stdout), done.returncode


def differences(board: dict[str, Any], known: dict[str, str]) -> list[str]:
    """Every scenario whose verdict is not the expected one, with its reason."""
    wrong = []
    for row in board["scenarios"]:
        expected = known.get(row["scenario"])
        if expected is None and row["verdict"] != "pass":
            wrong.append(f"{row['scenario']} failed: {row['reason']}")
        elif expected is not None and (row["verdict"] != "fail" or expected not in row["reason"]):
            wrong.append(f"{row['scenario']}: expected a failure with {expected!r}, got {row}")
    return wrong


def test_the_catalog() -> None:
    names = [s.name for s in CATALOG]
    assert len(names) >= 20 and len(set(names)) == len(names)
    assert all(1 <= s.rule <= 10 and s.must for s in CATALOG)
    assert set(names) == {name for broken in BREAKS.values() for name in broken}


@pytest.mark.parametrize("sdk", ["ctlwire", "ctlwire-trio"])
def test_ctlwire_passes_every_scenario(sdk: str) -> None:
    board, code = scoreboard(sdk)
    assert differences(board, {}) == []
    assert code == 0
    assert [row["scenario"] for row in board["scenarios"]] == [s.name for s in CATALOG]
    assert set(board) == {"sdk", "version", "scenarios"}
    assert {key for row in board["scenarios"] for key in row} == {
        "scenario",
        "rule",
        "verdict",
        "reason",
    }


@pytest.mark.skipif(STRIPPED, reason="the official SDKs do not use ctlwire's child path")
@pytest.mark.parametrize(
    ("sdk", "version", "known"),
    [
        ("python", "0.2.187", PYTHON_KNOWN),
        ("python-latest", "0.2.189", PYTHON_KNOWN),
        ("typescript", "0.3.330", TYPESCRIPT_KNOWN),
    ],
)
def test_official_sdks_known_failures(sdk: str, version: str, known: dict[str, str]) -> None:
    board, code = scoreboard(sdk)
    assert board["version"] == version
    assert differences(board, known) == []
    assert code == 1


@first_run_only
def test_the_naive_sdk_without_bugs_passes() -> None:
    board = run_catalog(NAIVE, timeout=40, jobs=6)
    assert [f"{v.scenario}: {v.reason}" for v in board.verdicts if v.verdict != "pass"] == []


@first_run_only
def test_every_scenario_fails_the_sdk_with_its_bug(tmp_path: Path) -> None:
    pairs = [(bug, BY_NAME[name]) for bug, names in BREAKS.items() for name in names]

    def one(index: int) -> tuple[str, str, str]:
        bug, scenario = pairs[index]
        run = run_driver(scenario, [*NAIVE, bug], tmp_path / str(index), 25.0)
        verdict = judge(scenario, run, 25.0)
        return f"{bug} / {scenario.name}", verdict.verdict, verdict.reason

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(one, range(len(pairs))))
    assert [(what, reason) for what, verdict, reason in results if verdict != "fail"] == []
    assert all(reason.startswith("rule ") for _, _, reason in results)


@first_run_only
def test_a_driver_that_does_nothing_fails_every_scenario() -> None:
    board = run_catalog([*NAIVE, "nothing"], jobs=8)
    assert {v.verdict for v in board.verdicts} == {"fail"}
    assert all("the driver never started the fake CLI" in v.reason for v in board.verdicts)


@first_run_only
def test_hangs_crashes_and_garbage_get_a_verdict_and_the_run_goes_on() -> None:
    two = CATALOG[:2]
    hung = run_catalog([*NAIVE, "hang"], two, timeout=2)
    assert [v.verdict for v in hung.verdicts] == ["fail", "fail"]
    assert all("timeout: the driver ran over 2s" in v.reason for v in hung.verdicts)
    crashed = run_catalog([*NAIVE, "crash"], two)
    assert all("crash: the driver exited with 3" in v.reason for v in crashed.verdicts)
    assert all("naive driver: crashing on purpose" in v.reason for v in crashed.verdicts)
    garbage = run_catalog([*NAIVE, "garbage"], two)
    assert all("printed garbage: 'this is not JSON'" in v.reason for v in garbage.verdicts)


def test_a_table_and_the_exit_codes() -> None:
    name = "keep_alive_is_not_a_message"
    done = conform("--only", name, "--driver", *NAIVE)
    assert done.returncode == 0, done.stderr
    assert f"| {name} | 7 | pass |  |" in done.stdout
    assert done.stdout.startswith("naive 0: 1 of 1 scenarios pass")
    broken = conform("--only", name, "--driver", *NAIVE, "keep-alive-as-message")
    assert broken.returncode == 1
    assert f"| {name} | 7 | fail | rule 7: the consumer got" in broken.stdout


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (["--sdk", "nope"], {}, "no driver for 'nope'"),
        (["--only", "nope"], {}, "no scenario nope"),
        (["--sdk", "typescript"], {"CTLWIRE_TS_SDK": "/nonexistent"}, "run `make ts-sdk`"),
        (["--sdk", "python-latest"], {"CTLWIRE_SDK_LATEST": "/nonexistent"}, "make sdk-latest"),
    ],
)
def test_cannot_run_exits_2_saying_how_to_install(
    args: list[str], env: dict[str, str], says: str
) -> None:
    done = conform(*args, env=env)
    assert done.returncode == 2
    assert says in done.stderr
