"""``ctlwire show --html`` and ``diff --html``: the page, its escaping, its size, and what a
real browser draws from it."""

from __future__ import annotations

import html
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from browser import DevTools, load
from helpers import SHIPPED_LOGS, first_run_only

from ctlwire.fixtures.command import main
from ctlwire.fixtures.index import LogIndex
from ctlwire.fixtures.log import LogFormatError, read_log
from ctlwire.fixtures.page_data import PAYLOAD_BUDGET, fit_budget
from ctlwire.fixtures.records import write_log
from ctlwire.fixtures.show import render, timeline
from ctlwire.fixtures.show_html import embed_json, session_page
from ctlwire.fixtures.synthetic import busy_session, synthetic_header

pytestmark = first_run_only

REAL_LOGS = sorted(SHIPPED_LOGS.glob("real_*.jsonl"))
DATA = re.compile(r'<script type="application/json" id="data">(.*?)</script>', re.S)


class Elements(HTMLParser):
    """The start tags of a document with their attributes, and the text of #errors."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.errors = ""
        self._in_errors = False
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_errors = dict(attrs).get("id") == "errors"

    def handle_endtag(self, tag: str) -> None:
        self._in_errors = False

    def handle_data(self, data: str) -> None:
        if self._in_errors:
            self.errors += data

    def all(self, tag: str, cls: str | None = None) -> list[dict[str, str | None]]:
        return [
            a
            for t, a in self.tags
            if t == tag and (cls is None or cls in (a.get("class") or "").split())
        ]


def page_data(page: str) -> dict[str, object]:
    found = DATA.search(page)
    assert found is not None, "no data block in the page"
    data: dict[str, object] = json.loads(found.group(1))
    return data


def assert_ran_cleanly(dom: str, console: list[str]) -> Elements:
    """The page's script ran to the end, and nothing reported an error."""
    assert not console, f"the browser console said: {console}"
    elements = Elements(dom)
    sessions = [a for t, a in elements.tags if a.get("id") == "sessions"]
    assert sessions and sessions[0].get("data-ready") == "1", "the script did not finish"
    assert not elements.errors.strip(), f"the page caught errors: {elements.errors}"
    return elements


# -- the page, without a browser ---------------------------------------------------------


def test_show_without_html_prints_the_text_timeline(capsys: pytest.CaptureFixture[str]) -> None:
    for path in REAL_LOGS:
        assert main(["show", str(path)]) == 0
        out = capsys.readouterr().out
        log = read_log(path)
        assert out == render(log, timeline(log)) + "\n"
        assert "<html" not in out


def test_html_needs_an_output_and_o_needs_html(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = str(REAL_LOGS[0])
    assert main(["show", "--html", log]) == 2
    assert "--html needs -o FILE" in capsys.readouterr().err
    assert main(["show", log, "-o", str(tmp_path / "x.html")]) == 2
    assert "-o goes with --html" in capsys.readouterr().err
    assert not (tmp_path / "x.html").exists()
    assert main(["show", "--html", str(tmp_path / "missing.jsonl"), "-o", "-"]) == 2
    assert "missing.jsonl: cannot read" in capsys.readouterr().err
    assert main(["show", "--html", log, "-o", str(tmp_path / "no" / "x.html")]) == 2
    assert "cannot write" in capsys.readouterr().err


def test_show_html_to_stdout_is_one_self_contained_page(
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = SHIPPED_LOGS / "real_slow_hook_is_cancelled_by_the_cli.jsonl"
    assert main(["show", "--html", str(path), "-o", "-"]) == 0
    page = capsys.readouterr().out
    assert page.startswith("<!doctype html>")
    # Nothing fetched: no source or link attribute, no CSS import or url(), and a policy
    # that forbids every fetch and lets only the page's own script run.
    assert not re.search(r"\s(src|href)\s*=|@import|url\(", page, re.I)
    assert "default-src 'none'" in page and "script-src 'sha256-" in page
    data = page_data(page)
    log = read_log(path)
    (session,) = data["sessions"]  # type: ignore[misc]
    assert len(session["records"]) == len(log.records)
    assert [r[0] for r in session["records"]] == log.lines
    assert session["payloads"] == [json.loads(json.dumps(getattr(r, r.kind))) for r in log.records]
    states = {r[4]: r[2] for r in session["requests"]}
    assert states == {"req_1_c624a62e": "ok", "8f06136a-8630-4af6-9762-b951974859ce": "cancelled"}


HOSTILE = [
    "</script><script>document.title='PWNED'</script>",
    "<!--<script>",
    "</SCRIPT ><img src=x onerror=\"document.title='PWNED'\">",
    '<b id="injected">bold</b> & &amp; \u2028\u2029 ]]>',
]


def hostile_log(folder: Path) -> Path:
    """A log whose payloads try to break out of the page, hold lone surrogates (as
    JavaScript writes them) and a 1 MiB string."""
    records = [
        {"t": 0.0, "src": "sdk", "frame": {"type": "control_request", "request_id": "r1",
         "request": {"subtype": "initialize", "hooks": HOSTILE}}},
        {"t": 0.1, "src": "cli", "frame": {"type": "control_response", "response": {
         "subtype": "success", "request_id": "r1", "response": {"big": "x" * (1 << 20)}}}},
        {"t": 0.2, "src": "cli", "frame": {"type": "assistant", "message": {"content": [
         {"type": "text", "text": t} for t in HOSTILE]}}},
        {"t": 0.3, "src": "cli", "stderr": HOSTILE[0]},
        {"t": 0.4, "src": "cli", "line": HOSTILE[2]},
        {"t": 0.5, "src": "cli", "exit": 0},
    ]  # fmt: skip
    lines = [json.dumps(r) for r in records]
    # A lone surrogate, escaped as JSON.stringify escapes it: json.dumps would too, but
    # say it outright; the subtype carries it so that it reaches labels and the filter.
    lines.insert(2, '{"t":0.15,"src":"cli","frame":{"type":"system","subtype":"a\\ud800b",'
                 '"lone":"\\udfff<\\/script>"}}')  # fmt: skip
    path = folder / "hostile.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_payloads_cannot_break_out_of_the_page(tmp_path: Path) -> None:
    page = session_page(read_log(hostile_log(tmp_path)))
    # Only the page's two script elements exist, and the data holds no markup at all.
    assert len(re.findall(r"<script", page, re.I)) == 2
    assert len(re.findall(r"</script", page, re.I)) == 2
    block = DATA.search(page)
    assert block is not None and not re.search(r"[<>&\u2028\u2029]", block.group(1))
    assert block.group(1).isascii()
    data = page_data(page)
    session = data["sessions"][0]  # type: ignore[index]
    assert session["payloads"][0]["request"]["hooks"] == HOSTILE
    assert "system/a\ud800b" in session["labels"]
    assert session["payloads"][2]["lone"] == "\udfff</script>"
    big = session["payloads"][1]["response"]["response"]["big"]
    assert big.startswith("x" * 2000) and big.endswith(
        f"[{(1 << 20) - 2000} more characters in the log]"
    )
    assert len(page) < 200_000


def test_embedded_json_escapes_mean_the_same() -> None:
    text = json.dumps(["</script>", "<!--", "a&b", "\u2028"], ensure_ascii=True)
    assert json.loads(embed_json(text)) == json.loads(text)
    assert not set("<>&") & set(embed_json(text))


def test_payloads_beyond_the_budget_are_cut_and_say_so() -> None:
    texts = [json.dumps("a" * 100), json.dumps('"' * 5000), json.dumps("b" * 10)]
    fitted = fit_budget(texts, 2000)
    assert sum(len(t) for t in fitted) <= 2000
    assert fitted[0] == texts[0] and fitted[2] == texts[2]
    cut = json.loads(fitted[1])
    assert set(cut) == {"shortened"} and cut["shortened"].startswith('"\\"\\"')
    assert fit_budget(texts, 10**6) == texts
    assert fit_budget(texts, 60) == ["null", "null", texts[2]]  # no room: the log line says


def big_log(path: Path, frames: int) -> Path:
    """A log of ``frames`` records of a busy session (`busy_session`)."""
    return write_log(path, busy_session(frames), synthetic_header())


def test_a_100k_frame_log_makes_a_page_under_8_mib(tmp_path: Path) -> None:
    log = read_log(big_log(tmp_path / "big.jsonl", 100_000))
    assert len(log.records) >= 100_000 and (tmp_path / "big.jsonl").stat().st_size > 8 << 20
    page = session_page(log)
    size = len(page.encode())
    print(f"page of {len(log.records)} records: {size / 2**20:.2f} MiB")
    assert size < 8 << 20
    data = page_data(page)
    session = data["sessions"][0]  # type: ignore[index]
    assert len(session["records"]) == len(session["payloads"]) == len(log.records)
    assert len(session["requests"]) == len(LogIndex(log).requests)
    assert sum(len(json.dumps(p)) for p in session["payloads"]) <= PAYLOAD_BUDGET * 1.05


# -- in a real browser -------------------------------------------------------------------


@pytest.mark.parametrize("path", REAL_LOGS, ids=lambda p: p.stem)
def test_real_log_page_in_chromium(path: Path, tmp_path: Path) -> None:
    page = tmp_path / f"{path.stem}.html"
    assert main(["show", "--html", str(path), "-o", str(page)]) == 0
    shot = tmp_path / f"{path.stem}.png"
    loaded = load(page, shot)
    print(f"screenshot: {shot} ({loaded.seconds:.2f} s in chromium)")
    elements = assert_ran_cleanly(loaded.dom, loaded.console)
    rows = {row["data-line"]: row for row in elements.all("tr", "request")}
    index = LogIndex(read_log(path))
    asked = [e for e in index.exchanges.values() if e.request is not None]
    assert asked and len(rows) == len(asked)
    for exchange in asked:
        row = rows[str(index.log.line_of(exchange.request or 0))]
        assert row["data-id"] == exchange.request_id
        assert (row["data-state"] == "cancelled") == exchange.cancelled, exchange
        drawn = re.fullmatch(r"(\d+)-(\d+)", row.get("data-drawn") or "")
        assert drawn and 0 < int(drawn[1]) <= int(drawn[2]) <= 1400, (exchange, row)
    assert shot.stat().st_size > 10_000


def test_hostile_log_page_runs_nothing_from_the_log(tmp_path: Path) -> None:
    page = tmp_path / "hostile.html"
    assert main(["show", "--html", str(hostile_log(tmp_path)), "-o", str(page)]) == 0
    shot = tmp_path / "hostile.png"
    loaded = load(page, shot, fragment="#line=1")  # shows the frames of the request
    print(f"screenshot: {shot}")
    elements = assert_ran_cleanly(loaded.dom, loaded.console)
    title = re.search(r"<title>(.*?)</title>", loaded.dom)
    assert title and title.group(1) == f"ctlwire: {tmp_path / 'hostile.jsonl'}"
    assert not elements.all("img") and not [
        a for _, a in elements.tags if a.get("id") == "injected"
    ]
    assert len(elements.all("script")) == 2
    # The payload is in the details as text: markup escaped, nothing parsed from it.
    assert html.escape(HOSTILE[0], quote=False) in loaded.dom
    assert [r["data-state"] for r in elements.all("tr", "request")] == ["ok"]


@pytest.mark.timeout(180)
def test_diff_html_and_a_100k_frame_page_in_chromium(tmp_path: Path) -> None:
    old = SHIPPED_LOGS.parent.parent / "tests/data/cli-2.1.330/real_write_turn.jsonl"
    new = SHIPPED_LOGS.parent.parent / "tests/data/cli-2.1.332/real_write_turn.jsonl"
    page = tmp_path / "diff.html"
    assert main(["diff", "--html", str(old), str(new), "-o", str(page)]) == 1  # as diff says
    assert main(["diff", "--html", str(old), str(old), "-o", str(tmp_path / "same.html")]) == 0
    shot = tmp_path / "diff.png"
    loaded = load(page, shot)
    print(f"screenshot: {shot}")
    elements = assert_ran_cleanly(loaded.dom, loaded.console)
    changed = elements.all("tr", "changed")
    assert changed and "sandbox_enabled" in loaded.dom and elements.all("tr", "values")
    assert len(elements.all("canvas")) == 2

    big = tmp_path / "big.html"
    argv = ["show", "--html", str(big_log(tmp_path / "big.jsonl", 100_000)), "-o", str(big)]
    assert main(argv) == 0
    loaded = load(big, tmp_path / "big.png", timeout=120)
    print(f"100k frames: {loaded.seconds:.2f} s to load and draw in chromium")
    elements = assert_ran_cleanly(loaded.dom, loaded.console)
    assert len(elements.all("tr", "request")) == 500  # the list shows what is in view


# -- the cassette fixture's page of a replay mismatch -------------------------------------

MISMATCH_TEST = """
import json
import subprocess


def test_says_goodbye(ctlwire_cassette):
    frame = {"type": "user", "message": {"role": "user", "content": "goodbye"}}
    subprocess.run(ctlwire_cassette.argv, input=json.dumps(frame).encode() + b"\\n",
                   capture_output=True, timeout=60)
"""


@pytest.mark.timeout(120)
def test_a_replay_mismatch_writes_both_sessions_as_one_page(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_mine=MISMATCH_TEST)
    recorded = [
        {"t": 0.0, "src": "sdk", "frame": {"type": "user", "message": {"role": "user",
         "content": "hello"}}},
        {"t": 0.1, "src": "cli", "frame": {"type": "result", "subtype": "success"}},
        {"t": 0.2, "src": "sdk", "eof": True},
        {"t": 0.3, "src": "cli", "exit": 0},
    ]  # fmt: skip
    cassette = pytester.path / "cassettes" / "test_mine" / "test_says_goodbye.jsonl"
    cassette.parent.mkdir(parents=True)
    cassette.write_text("".join(json.dumps(r) + "\n" for r in recorded))

    run = pytester.runpytest_subprocess(timeout=90)  # without the option: no page
    run.assert_outcomes(failed=1)
    assert "side by side" not in run.stdout.str()
    assert not list(pytester.path.rglob("*.html"))

    run = pytester.runpytest_subprocess("--ctlwire-html-dir=pages", timeout=90)
    run.assert_outcomes(failed=1)
    page = pytester.path / "pages" / "test_mine.test_says_goodbye.html"
    run.stdout.fnmatch_lines(
        ["*did not replay:*", "*message.content*", f"*side by side: {page}", "*re-record*"]
    )
    data = page_data(page.read_text())
    a, b = data["sessions"]  # type: ignore[misc]
    assert data["names"] == ["A, recorded (the cassette)", "B, replayed (this run)"]
    assert a["title"] == str(cassette) and a["exit"] == 0
    assert b["exit"] == 97  # the fake CLI's mismatch, seen through the recorder
    assert b["payloads"][0]["message"]["content"] == "goodbye"
    assert any("MISMATCH" in str(p) for p in b["payloads"])
    # The two user frames, aligned: alike in shape, with another text.
    assert [0, 0, 0, [], ["message.content"]] in data["aligned"]


def test_a_log_with_lone_surrogates_reads_and_nan_still_does_not(tmp_path: Path) -> None:
    path = tmp_path / "odd.jsonl"
    path.write_text('{"t":0,"src":"cli","frame":{"type":"x","s":"a\\ud800"}}\n')
    assert read_log(path).records[0].frame == {"type": "x", "s": "a\ud800"}
    for bad, what in (
        ('{"t":0,"src":"cli","frame":{"n":NaN}}', "not JSON"),
        ('{"t":0,"src":"cli","frame":{"s":"\\ud800"},"eof":true}', "a record needs exactly one of"),
        ('{"t":"0","src":"cli","frame":{"s":"\\ud800"}}', "invalid record"),
    ):
        path.write_text(bad + "\n")
        with pytest.raises(LogFormatError, match=f"odd.jsonl:1: {what}"):
            read_log(path)


BAR = """(() => {
  const row = document.querySelector('tr.request[data-line="LINE"]');
  const box = document.querySelector("canvas").getBoundingClientRect();
  const [x0, x1] = row.dataset.drawn.split("-").map(Number);
  return [box.left + x0, box.left + x1, box.top + Number(row.dataset.y)];
})()"""
ROWS = "[...document.querySelectorAll('tr.request')].map((r) => r.dataset.line)"


def test_click_drag_zoom_and_filter_in_chromium(tmp_path: Path) -> None:
    """A person's clicks, driven over the DevTools protocol: a bar shows its frames, a
    drag zooms to its range, a double-click fits, a filter hides a subtype."""
    page = tmp_path / "hook.html"
    path = SHIPPED_LOGS / "real_slow_hook_is_cancelled_by_the_cli.jsonl"
    assert main(["show", "--html", str(path), "-o", str(page)]) == 0
    tools = DevTools()
    try:
        tools.call("Network.enable")
        tools.call("Page.navigate", url=page.as_uri())
        tools.wait_event("Page.loadEventFired")
        assert tools.evaluate(ROWS) == ["2", "8"]
        fetched = [
            e["params"]["request"]["url"]
            for e in tools.events
            if e.get("method") == "Network.requestWillBeSent"
        ]
        assert fetched == [page.as_uri()]  # the page alone: nothing else is fetched
        x0, x1, y = tools.evaluate(BAR.replace("LINE", "8"))  # the cancelled hook
        tools.click((x0 + x1) / 2, y)
        detail = tools.evaluate("document.getElementById('detail').textContent")
        assert "hook_callback" in detail and "cancelled after 1999.1 ms" in detail, detail
        assert "request: line 8" in detail and "cancel: line 9" in detail
        shot = tmp_path / "clicked.png"
        tools.screenshot(shot)
        print(f"screenshot: {shot}")

        x0, x1, y = tools.evaluate(BAR.replace("LINE", "2"))  # drag across initialize
        tools.mouse("mousePressed", x0, y + 30)
        tools.mouse("mouseMoved", x1, y + 30)
        tools.mouse("mouseReleased", x1, y + 30)
        zoom = "['zoom-from', 'zoom-to'].map((id) => +document.getElementById(id).value)"
        start, end = tools.evaluate(zoom)
        assert abs(start - 0.001) < 0.01 and abs(end - 0.4088) < 0.01, (start, end)
        assert tools.evaluate(ROWS) == ["2"]  # the hook starts later: out of view

        tools.click(x0 + 5, y + 30, clicks=2)  # a double-click fits the whole session
        assert tools.evaluate("+document.getElementById('zoom-from').value") == 0
        assert tools.evaluate(ROWS) == ["2", "8"]

        tools.evaluate("document.querySelector('[data-key=\"request hook_callback\"]').click()")
        assert tools.evaluate(ROWS) == ["2"]
        assert tools.evaluate("document.getElementById('sessions').dataset.bars") == "1"
        assert not tools.problems()
        assert tools.evaluate("document.getElementById('errors').hidden") is True
    finally:
        tools.close()
