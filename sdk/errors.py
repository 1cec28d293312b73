"""The one error ctlwire.sdk adds: an SDK `CLIJSONDecodeError` that says what was wrong."""

from __future__ import annotations

from claude_agent_sdk import CLIJSONDecodeError

from ctlwire.transport import CtlwireError

PREVIEW = 100


class BadCLIOutput(CLIJSONDecodeError, CtlwireError):
    """A stdout line that cannot be a message: too long, not UTF-8, or broken JSON.

    It is the SDK's `CLIJSONDecodeError` (what SDK callers already catch) and a
    `ctlwire.CtlwireError`; ``line`` is the line (or its start) as text, ``reason`` the
    fault, ``original_error`` what the decoder or the framer raised.
    """

    def __init__(self, reason: str, line: str, original_error: Exception) -> None:
        super().__init__(line, original_error)
        self.reason = reason
        shown = f": {line[:PREVIEW]!r}" + ("..." if len(line) > PREVIEW else "") if line else ""
        self.args = (f"{reason}{shown}",)

    def __str__(self) -> str:
        return str(self.args[0])
