"""The wire: decoding and encoding JSON lines, and the fast path's proof by bytes."""

from __future__ import annotations

import contextlib
import json
import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ctlwire.protocol import ControlProtocol, FrameDecodeError
from ctlwire.protocol.wire import decode_line, decode_lines, encode_frame, may_hold_control


def test_unknown_types_pass_through_and_keys_in_any_order() -> None:
    assert decode_line(b'{"n": 1, "type": "brand_new"}') == {"n": 1, "type": "brand_new"}
    assert decode_line(b'{"no_type": true}') == {"no_type": True}


def test_non_json_and_non_utf8_lines_are_skipped(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    assert decode_line(b"[SandboxDebug] hello") is None
    assert decode_line(b'{"a": "\xff\xfe"}') is None
    assert "not UTF-8" in caplog.text


def test_garbled_json_is_a_typed_error_with_preview() -> None:
    with pytest.raises(FrameDecodeError) as info:
        decode_line(b'{"type": "assistant", garbled')
    assert "garbled" in info.value.preview
    with pytest.raises(FrameDecodeError):
        decode_line(b'{"a": 1} trailing')


def test_decode_lines_logs_and_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    lines = [b'{"n":1}', b"{broken", b"noise", b'{"n":2}']
    assert decode_lines(lines) == [{"n": 1}, {"n": 2}]
    assert not may_hold_control(lines)
    assert "{broken" in caplog.text


@given(
    st.lists(
        st.sampled_from(
            [
                b'{"type":"assistant","n":1}',
                b'{"type":"keep_alive"}',
                b"[1,2]",
                b"noise",
                b'{"a":1},{"b":2}',
                b'{"type":"control_request","request_id":"r"}',
                b"{bad",
                b'{"type":"result","text":"about control_ frames"}',
                b'"str"',
                b"{}",
            ]
        ),
        min_size=1,
        max_size=12,
    )
)
def test_batch_decode_equals_line_by_line(lines: list[bytes]) -> None:
    frames = decode_lines(lines)
    expected = []
    for line in lines:
        with contextlib.suppress(FrameDecodeError):
            frame = decode_line(line)
            if frame is not None:
                expected.append(frame)
    assert frames == expected
    # keep_alive needs no routing: messages() drops it when it decodes the line.
    has_control = any(f.get("type") == "control_request" for f in frames)
    assert may_hold_control(lines) or not has_control


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10,
)


@given(
    st.dictionaries(st.text(), json_values, max_size=6),
    st.sampled_from(
        sorted(
            {
                "control_request",
                "control_response",
                "control_cancel_request",
                "keep_alive",
                "assistant",
            }
        )
    ),
)
def test_random_frames_round_trip_or_fail_typed(frame: dict[str, object], kind: str) -> None:
    frame = {**frame, "type": kind}
    line = bytes(encode_frame(frame))
    assert line.endswith(b"\n")
    decoded = decode_line(line[:-1])
    assert decoded == frame
    ControlProtocol().receive([line[:-1]])  # routed or reported, never raised


@given(st.binary(max_size=200))
def test_random_bytes_never_raise_untyped(data: bytes) -> None:
    with contextlib.suppress(FrameDecodeError):
        decode_line(b"{" + data)


def test_big_lines_are_never_joined_with_their_neighbours() -> None:
    big = b'{"type":"assistant","pad":"' + b"x" * (2 << 20) + b'"}'
    lines = [big, b'{"type":"result"}']
    assert not may_hold_control(lines)
    frames = decode_lines(lines)
    assert [f["type"] for f in frames] == ["assistant", "result"]
    assert may_hold_control([big, b'{"type":"control_request"}'])


def _escape_some(text: str, picks: list[bool]) -> str:
    """``text`` as a JSON string body with the characters ``picks`` marks as \\u escapes
    (upper or lower case hex, alternately)."""
    out = []
    for i, char in enumerate(text):
        if picks[i % len(picks)]:
            code = f"{ord(char):04x}"
            out.append("\\u" + (code.upper() if i % 2 else code))
        else:
            out.append(json.dumps(char)[1:-1])
    return "".join(out)


@given(
    st.sampled_from(["control_request", "control_response", "control_cancel_request"]),
    st.lists(st.booleans(), min_size=1, max_size=20),
    st.dictionaries(st.sampled_from(["a", "text", "n"]), json_values, max_size=3),
    st.booleans(),
)
def test_the_fast_path_never_misses_a_control_frame(
    kind: str, picks: list[bool], rest: dict[str, object], type_last: bool
) -> None:
    spelled = '"type":"' + _escape_some(kind, picks) + '"'
    body = json.dumps(rest)[1:-1]
    parts = [body, spelled] if type_last else [spelled, body]
    line = ("{" + ",".join(p for p in parts if p) + "}").encode()
    assert decode_line(line)["type"] == kind  # type: ignore[index]
    assert may_hold_control([line])
    assert may_hold_control([b'{"type":"assistant"}', line, b'{"type":"result"}'])
