"""Sans-IO: one stdout line of the CLI to the message dict the SDK expects, or an error."""

from __future__ import annotations

import json
import logging
from typing import Any

import msgspec

from .errors import BadCLIOutput

logger = logging.getLogger(__name__)

_decode = msgspec.json.Decoder().decode


def decode_message(line: bytes) -> dict[str, Any] | None:
    """The line as a JSON object; None for a line that is not meant as one.

    As the SDK's own transport does, a line whose first non-blank character is not ``{``
    is noise some CLI builds print (debug output) and is skipped. A line that starts
    like an object but is not one raises `BadCLIOutput` (a `CLIJSONDecodeError`).
    """
    stripped = line.strip()
    if not stripped.startswith(b"{"):
        if stripped:
            logger.debug("skipping non-JSON stdout line: %r", stripped[:200])
        return None
    try:
        message = _decode(stripped)
    except (msgspec.DecodeError, RecursionError) as exc:
        # msgspec refuses lone surrogates (\ud83d), which the CLI writes when it cuts text
        # mid-emoji; the standard library keeps them, as the SDK does. Invalid UTF-8 and
        # broken JSON fail there too, and the error says which.
        message = _decode_slowly(stripped, exc)
    if not isinstance(message, dict):
        raise BadCLIOutput("a stdout line is not one JSON object", _text(stripped), ValueError())
    return message


def _decode_slowly(line: bytes, first: Exception) -> Any:
    try:
        text = line.decode()
    except UnicodeDecodeError as exc:
        raise BadCLIOutput("a stdout line is not valid UTF-8", _text(line), exc) from exc
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise BadCLIOutput(f"a stdout line is not valid JSON ({first})", text, exc) from exc


def _text(line: bytes) -> str:
    return line[:200].decode("utf-8", "backslashreplace")
