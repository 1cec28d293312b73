"""Scrubbing: the one implementation behind ctlwire record, the cassettes and the fake CLI."""

from __future__ import annotations

import os
from pathlib import Path

from ctlwire.fixtures.real_cli import project_replacements
from ctlwire.fixtures.scrub import (
    REDACTED,
    Scrubber,
    cli_slug,
    machine_replacements,
    parse_replacement,
    path_forms,
)


def test_the_slug_maps_slash_dot_and_underscore() -> None:
    assert cli_slug("/tmp/my_proj.v2/work") == "-tmp-my-proj-v2-work"
    # the shipped logs' helper now spells the slug the same way
    assert project_replacements("/a/b_c.d", "/h/o_me")["-a-b-c-d"] == "-srv-project"


def test_paths_in_every_form_and_only_whole(tmp_path: Path) -> None:
    real = tmp_path / "real_dir.x"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    scrub = Scrubber(machine_replacements(cwd=str(link), home="/h/me", tmp="/tmp"))
    raw, resolved, slug = str(link), str(real), cli_slug(str(real))
    text = f"{raw}/a {resolved}/b projects/{slug}/s.jsonl /tmp/x /srv/tmp/y /tmpfoo /h/me. /h/mex"
    assert scrub.text(text) == (
        "/srv/project/a /srv/project/b projects/-srv-project/s.jsonl /srv/tmp/x /srv/tmp/y "
        "/tmpfoo /home/user. /h/mex"
    )
    # scrubbed text scrubs to itself: the fake CLI scrubs frames that echo a cassette
    assert scrub.text(scrub.text(text)) == scrub.text(text)


def test_relative_replacements_stay_literal() -> None:
    assert path_forms("claude-fake-1", "model") == {"claude-fake-1": "model"}
    assert path_forms("/", "x") == {}
    assert parse_replacement("a=b=c") == ("a=b", "c")


def test_secrets_are_masked_but_a_variable_name_is_not() -> None:
    scrub = Scrubber({})
    frame = {
        "apiKeySource": "ANTHROPIC_API_KEY",
        "api_key": "hunter22",
        "text": "key sk-ant-api03-abcdefgh and Authorization: Bearer abcdefghijkl",
    }
    assert scrub.value(frame) == {
        "apiKeySource": "ANTHROPIC_API_KEY",
        "api_key": REDACTED,
        "text": f"key {REDACTED} and Authorization: {REDACTED}",
    }
    assert Scrubber({}, secrets=False).value(frame) == frame


def test_machine_defaults_come_from_this_process() -> None:
    found = machine_replacements()
    assert found[os.getcwd()] == "/srv/project"
