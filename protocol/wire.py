"""The wire: frame type names, frame builders, and JSON lines in and out.

Any valid JSON text is read for what it means: leading white space, escapes, lone UTF-16
surrogates (the real CLI cuts strings in the middle of an emoji) and numbers msgspec
cannot hold all decode; msgspec takes every line first and the standard library only
the lines msgspec refuses. What ctlwire writes is always valid UTF-8 JSON.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from typing import Any, Final

import msgspec

from .errors import FrameDecodeError, preview

logger = logging.getLogger(__name__)

CONTROL_REQUEST: Final = "control_request"
CONTROL_RESPONSE: Final = "control_response"
CONTROL_CANCEL: Final = "control_cancel_request"
KEEP_ALIVE: Final = "keep_alive"
# Frame types the dispatcher handles itself; a frame of any other string type is a message.
ROUTED: Final = (CONTROL_REQUEST, CONTROL_RESPONSE, CONTROL_CANCEL, KEEP_ALIVE)

Frame = dict[str, Any]

_decoder = msgspec.json.Decoder()
# Typed as objects, so msgspec itself checks that each line holds exactly one object.
_lines_decoder = msgspec.json.Decoder(dict[str, Any])


def _plain_mapping(value: object) -> object:
    """msgspec encodes dicts; any other mapping a handler returns is encoded as one."""
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


_encoder = msgspec.json.Encoder(enc_hook=_plain_mapping)

# Batches up to this size are joined for one search / one decode; past it (a read that
# ends a huge line) each line is handled alone, so a big line is never copied again.
BATCH_BYTES = 1 << 20
_LEADING = b" \t\r\n"
_BOM = b"\xef\xbb\xbf"
# A control type spelled with escapes must escape one of the letters of "control_"
# (c o n t r l _); no other JSON escape yields a letter.
_ESCAPED_CONTROL_LETTER = re.compile(rb"\\u00(?:6[3cefCEF]|7[24]|5[fF])")


def may_hold_control(lines: list[bytes]) -> bool:
    """False only when no line can be a control frame (a proof by bytes, no decoding).

    ``lines`` come from one read, so only the first (which may complete a line held from
    earlier reads) can be huge; then the lines are searched one by one, never joined.
    """
    if len(lines) == 1 or len(lines[0]) > BATCH_BYTES:
        return any(may_be_control(line) for line in lines)
    return may_be_control(b"\n".join(lines))


def may_be_control(data: bytes) -> bool:
    """False only when ``data`` cannot hold a control frame, escaped or not."""
    if b"control_" in data:
        return True
    # A one-byte search is a memchr, many times faster than any longer needle: most reads
    # hold no escape at all and never reach the pattern.
    return b"\\" in data and _ESCAPED_CONTROL_LETTER.search(data) is not None


def decode_line(line: bytes) -> Frame | None:
    """One line as a JSON object. None for a line that is not JSON (debug-logged).

    Raises `FrameDecodeError` for a line that looks like JSON (its first non-blank
    character is ``{``) but is not a JSON object.
    """
    if line[:1] != b"{":
        line = line.lstrip(_LEADING).removeprefix(_BOM).lstrip(_LEADING)
        if line[:1] != b"{":
            logger.debug("skipping non-JSON stdout line: %s", preview(line))
            return None
    try:
        frame = _decoder.decode(line)
    except UnicodeDecodeError:
        logger.debug("skipping stdout line that is not UTF-8: %s", preview(line))
        return None
    except (msgspec.DecodeError, RecursionError) as exc:
        frame = _decode_refused(line, exc)
        if frame is None:
            return None
    if type(frame) is not dict:
        raise FrameDecodeError("frame is not a JSON object", line)
    return frame


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_DIGITS = 4000  # under the interpreter's limit on converting digit strings to int


def _parse_int(digits: str) -> int:
    """Any JSON integer, however long (int() refuses over ~4300 digits)."""
    if len(digits) <= _DIGITS:
        return int(digits)
    sign, digits = (-1, digits[1:]) if digits[0] == "-" else (1, digits)
    value = 0
    for start in range(0, len(digits), _DIGITS):
        chunk = digits[start : start + _DIGITS]
        value = value * 10 ** len(chunk) + int(chunk)
    return sign * value


def _decode_refused(line: bytes, error: BaseException) -> Any:
    """A line msgspec refused: lone surrogates and huge numbers are valid JSON still."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        logger.debug("skipping stdout line that is not UTF-8: %s", preview(line))
        return None
    try:
        return json.loads(text, parse_constant=_reject_constant, parse_int=_parse_int)
    except (ValueError, RecursionError):
        raise FrameDecodeError(f"unparseable JSON frame ({error})", line) from None


def parse_object(line: bytes) -> Frame | None:
    """The line as a JSON object, or None if it is anything else; never raises or logs.
    For tools that keep what is not a frame as text (the log writer, the fake CLI)."""
    try:
        return decode_line(line)
    except FrameDecodeError:
        return None


def decode_lines(lines: list[bytes]) -> list[Frame]:
    """Decode a batch of lines, skipping non-JSON ones and logging unparseable ones.

    The fast path parses the whole batch in one msgspec call, each line on its own (a
    line that is not exactly one object fails it); a noisy batch falls back to
    line-by-line decoding with the same result.
    """
    if len(lines) > 1 and sum(map(len, lines)) <= BATCH_BYTES:
        batch = _decode_batch(lines)
        if batch is not None:
            return batch
    frames: list[Frame] = []
    append = frames.append
    for line in lines:
        try:
            frame = decode_line(line)
        except FrameDecodeError as exc:
            logger.warning("skipping malformed stdout line: %s", exc)
            continue
        if frame is not None:
            append(frame)
    return frames


def _decode_batch(lines: list[bytes]) -> list[Frame] | None:
    """Every line as one object, or None when some line is anything else."""
    try:
        batch = _lines_decoder.decode_lines(b"\n".join(lines))
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return None
    return batch if len(batch) == len(lines) else None


def frame_type(frame: Mapping[str, Any] | None) -> str | None:
    """A frame's ``type`` when it is a string, else None."""
    kind = frame.get("type") if frame is not None else None
    return kind if kind.__class__ is str else None


def is_message(frame: Mapping[str, Any]) -> bool:
    """An ordinary message, for the consumer: a frame whose ``type`` is a string and not
    one of the `ROUTED` types (control traffic, keep-alives)."""
    kind = frame_type(frame)
    return kind is not None and kind not in ROUTED


_JSON_NAMES = {dict: "object", list: "array", str: "string", bool: "bool", int: "number"}
_JSON_PHRASES = {
    "object": "an object",
    "array": "a list",
    "string": "a string",
    "bool": "a boolean",
    "number": "a number",
}


def json_type(value: object, *, phrase: bool = False) -> str:
    """A JSON value's type: its name (object, array, string, number, bool or null), or
    with ``phrase`` as an error message reads (an object, a list, a boolean...)."""
    if value is None:
        return "null"
    name = _JSON_NAMES.get(type(value)) or ("number" if isinstance(value, float) else "unknown")
    return _JSON_PHRASES.get(name, name) if phrase else name


def encode_frame(frame: Mapping[str, Any]) -> bytearray:
    """Encode one frame as a ``\\n``-terminated JSON line (valid UTF-8 whatever it holds:
    strings with lone surrogates are written as ``\\u`` escapes)."""
    buf = bytearray()
    try:
        _encoder.encode_into(frame, buf)
    except UnicodeEncodeError:
        text = json.dumps(msgspec.to_builtins(frame), separators=(",", ":"), allow_nan=False)
        buf = bytearray(text.encode("ascii"))
    buf.append(0x0A)
    return buf


def request_frame(request_id: str, request: Mapping[str, Any]) -> Frame:
    return {"type": CONTROL_REQUEST, "request_id": request_id, "request": request}


def success_frame(request_id: str, response: Mapping[str, Any]) -> Frame:
    return {
        "type": CONTROL_RESPONSE,
        "response": {"subtype": "success", "request_id": request_id, "response": response},
    }


def error_frame(request_id: str, message: str) -> Frame:
    return {
        "type": CONTROL_RESPONSE,
        "response": {"subtype": "error", "request_id": request_id, "error": message},
    }


def cancel_frame(request_id: str) -> Frame:
    return {"type": CONTROL_CANCEL, "request_id": request_id}
