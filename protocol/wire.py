"""The wire: frame type names, frame builders, and encoding and decoding of JSON lines."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Final

import msgspec

from .errors import FrameDecodeError, MalformedFrame, preview

logger = logging.getLogger(__name__)

CONTROL_REQUEST: Final = "control_request"
CONTROL_RESPONSE: Final = "control_response"
CONTROL_CANCEL: Final = "control_cancel_request"
KEEP_ALIVE: Final = "keep_alive"
CONTROL_TYPES: Final = frozenset({CONTROL_REQUEST, CONTROL_RESPONSE, CONTROL_CANCEL, KEEP_ALIVE})

Frame = dict[str, Any]

_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()


class ControlRequest(msgspec.Struct, frozen=True):
    """``{"type": "control_request", "request_id", "request": {"subtype", ...}}``."""

    request_id: str
    request: dict[str, Any]

    @property
    def subtype(self) -> str:
        return str(self.request["subtype"])


class ResponseBody(msgspec.Struct, frozen=True):
    """The ``response`` object of a control_response."""

    subtype: str
    request_id: str
    response: dict[str, Any] | None = None
    error: str | None = None


class ControlResponse(msgspec.Struct, frozen=True):
    response: ResponseBody


class ControlCancel(msgspec.Struct, frozen=True):
    request_id: str


ControlFrame = ControlRequest | ControlResponse | ControlCancel


def parse_object(line: bytes) -> Frame | None:
    """The line as a JSON object, or None if it is anything else; never raises or logs.
    For tools that keep what is not a frame as text (the log writer, the fake CLI)."""
    try:
        value = _decoder.decode(line)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return None
    return value if type(value) is dict else None


def decode_line(line: bytes) -> Frame | None:
    """Decode one stdout line. None for a line that is not JSON (skipped, debug-logged).

    Raises `FrameDecodeError` for a line that starts with ``{`` but does not parse.
    """
    if line[:1] != b"{":
        logger.debug("skipping non-JSON stdout line: %s", preview(line))
        return None
    try:
        frame = _decoder.decode(line)
    except UnicodeDecodeError:
        logger.debug("skipping stdout line that is not UTF-8: %s", preview(line))
        return None
    except msgspec.DecodeError as exc:
        raise FrameDecodeError(f"unparseable JSON frame ({exc})", line) from None
    if type(frame) is not dict:
        raise FrameDecodeError("frame is not a JSON object", line)
    return frame


# Typed as a list of objects, so msgspec itself checks that each line was an object.
_batch_decoder = msgspec.json.Decoder(list[dict[str, Any]])


# Batches up to this size are joined for one search / one decode; past it (a read that
# ends a huge line) each line is handled alone, so a big line is never copied again.
BATCH_BYTES = 1 << 20


def may_hold_control(lines: list[bytes]) -> bool:
    """False only if no line can be a control frame that needs routing (a byte search,
    no decoding). ``keep_alive`` frames need none: whoever decodes them drops them.

    ``lines`` come from one read, so only the first (which may complete a line held from
    earlier reads) can be huge; then the lines are searched one by one, never joined.
    """
    if len(lines) == 1 or len(lines[0]) > BATCH_BYTES:
        return any(b"control_" in line for line in lines)
    return b"control_" in b"\n".join(lines)


def decode_lines(lines: list[bytes]) -> list[Frame]:
    """Decode a batch of lines, skipping non-JSON ones and logging unparseable ones.

    The fast path parses the whole batch as one JSON array, one msgspec call; it is
    taken only when that yields exactly one object per line, so a noisy batch falls back
    to line-by-line decoding with the same result.
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
    """All lines as one JSON array, or None when that is not one object per line."""
    framed = lines.copy()
    framed[0] = b"[" + framed[0]
    framed[-1] = framed[-1] + b"]"
    try:
        batch = _batch_decoder.decode(b",".join(framed))
    except (msgspec.DecodeError, UnicodeDecodeError):
        return None
    return batch if len(batch) == len(lines) else None


def parse_control(kind: str, frame: Frame) -> ControlFrame | None:
    """The typed envelope of a control frame (None for keep_alive).

    Raises `MalformedFrame` naming what is missing; its ``request_id`` is set when the
    frame had one, so the caller can still answer it with an error.
    """
    if kind == KEEP_ALIVE:
        return None
    rid = frame.get("request_id")
    request_id = rid if isinstance(rid, str) else None
    try:
        if kind == CONTROL_REQUEST:
            request = frame.get("request")
            if request_id is None:
                raise MalformedFrame("control_request without a request_id", frame)
            if not isinstance(request, dict) or not isinstance(request.get("subtype"), str):
                raise MalformedFrame("control_request without request.subtype", frame, request_id)
            return ControlRequest(request_id, request)
        if kind == CONTROL_RESPONSE:
            return msgspec.convert(frame, ControlResponse)
        return msgspec.convert(frame, ControlCancel)
    except msgspec.ValidationError as exc:
        raise MalformedFrame(f"invalid {kind} ({exc})", frame, request_id) from None


def encode_frame(frame: Mapping[str, Any]) -> bytearray:
    """Encode one frame as a ``\\n``-terminated JSON line."""
    buf = bytearray()
    _encoder.encode_into(frame, buf)
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
