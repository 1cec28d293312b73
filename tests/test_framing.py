"""Line framing, fed one byte at a time and in random chunkings."""

from __future__ import annotations

import pytest
from helpers import real_session, real_session_logs
from hypothesis import given, settings
from hypothesis import strategies as st

from ctlwire.transport import LineFramer, LineTooLong

SAMPLE = (
    b'{"type":"assistant","text":"  leading and trailing  "}\n'
    b'{"type":"user","text":"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"}\r\n'
    b"\n"
    b"   \n"
    b'{"type":"result","text":"\\t tab "}\n'
    b"[SandboxDebug] not json\n"
)
EXPECTED = [
    b'{"type":"assistant","text":"  leading and trailing  "}',
    b'{"type":"user","text":"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"}',
    b"   ",
    b'{"type":"result","text":"\\t tab "}',
    b"[SandboxDebug] not json",
]


def feed_chunks(data: bytes, cuts: list[int], limit: int = 1 << 20) -> list[bytes]:
    framer = LineFramer(limit)
    out: list[bytes] = []
    start = 0
    for cut in [*sorted(cuts), len(data)]:
        out += framer.feed(data[start:cut])
        start = cut
    return out + framer.end()


def test_one_byte_at_a_time() -> None:
    assert feed_chunks(SAMPLE, list(range(len(SAMPLE)))) == EXPECTED


@given(st.lists(st.integers(0, len(SAMPLE)), max_size=30))
def test_any_chunking_gives_the_same_lines(cuts: list[int]) -> None:
    assert feed_chunks(SAMPLE, cuts) == EXPECTED


def test_recorded_sessions_byte_by_byte() -> None:
    for path in real_session_logs():
        data = path.read_bytes()
        want = [line for line in data.split(b"\n") if line]
        framer = LineFramer()
        got = [line for i in range(len(data)) for line in framer.feed(data[i : i + 1])]
        assert got + framer.end() == want, path.name


@settings(max_examples=50)
@given(st.data())
def test_recorded_session_random_chunks(data: st.DataObject) -> None:
    raw = real_session("mcp_sdk.jsonl").read_bytes()
    cuts = data.draw(st.lists(st.integers(0, len(raw)), max_size=200))
    assert feed_chunks(raw, cuts) == [line for line in raw.split(b"\n") if line]


def test_final_line_without_newline_arrives_at_end() -> None:
    framer = LineFramer()
    assert framer.feed(b'{"a":1}\n{"b"') == [b'{"a":1}']
    assert framer.feed(b":2}") == []
    assert framer.end() == [b'{"b":2}']


@pytest.mark.parametrize("cut", [0, 1, 5, 9, 10])
def test_line_exactly_at_limit_passes(cut: int) -> None:
    line = b"x" * 10
    assert feed_chunks(line + b"\n", [cut], limit=10) == [line]
    assert feed_chunks(line + b"\r\n", [cut], limit=11) == [line]


@pytest.mark.parametrize("cut", [0, 1, 5, 10, 11])
def test_one_byte_over_the_limit_fails_with_limit_and_size(cut: int) -> None:
    with pytest.raises(LineTooLong) as info:
        feed_chunks(b"x" * 11 + b"\n", [cut], limit=10)
    assert info.value.limit == 10
    assert info.value.size == 11
    assert "limit is 10 bytes" in str(info.value)


def test_partial_line_over_limit_fails_before_its_newline() -> None:
    framer = LineFramer(100)
    framer.feed(b"y" * 60)
    with pytest.raises(LineTooLong) as info:
        framer.feed(b"y" * 60)  # no newline yet: memory must stay bounded
    assert info.value.size == 120
    assert framer.buffered == 0
    with pytest.raises(LineTooLong):  # a failed framer stays failed
        framer.feed(b"\n")


@given(st.lists(st.binary(max_size=300), max_size=40), st.integers(1, 64))
def test_random_bytes_bounded_and_typed(chunks: list[bytes], limit: int) -> None:
    framer = LineFramer(limit)
    try:
        for chunk in chunks:
            for line in framer.feed(chunk):
                assert 0 < len(line) <= limit
                assert b"\n" not in line
            assert framer.buffered <= limit
        framer.end()
    except LineTooLong as exc:
        assert exc.size > exc.limit == limit


def test_big_line_in_many_chunks_is_linear() -> None:
    framer = LineFramer(64 << 20)
    chunk = b"z" * 65536
    for _ in range(512):
        assert framer.feed(chunk) == []
    (line,) = framer.feed(b"\n")
    assert len(line) == 512 * 65536


def test_lines_before_an_overlong_one_are_delivered_first() -> None:
    framer = LineFramer(10)
    assert framer.feed(b"ok\n" + b"x" * 11 + b"\nlost\n") == [b"ok"]
    with pytest.raises(LineTooLong):
        framer.feed(b"")
