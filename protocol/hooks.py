"""Hook registrations: callbacks by id, and their wire form for ``initialize``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .context import RequestContext

HookCallback = Callable[[dict[str, Any], str | None, RequestContext], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class HookMatcher:
    """Callbacks for one hook event, for tools matching ``matcher`` (None: all tools).

    ``timeout`` (seconds) is enforced by the CLI, which cancels a callback that overruns.
    """

    matcher: str | None = None
    callbacks: Sequence[HookCallback] = field(default_factory=list)
    timeout: float | None = None


class HookRegistry:
    """Assigns ids ``hook_0``, ``hook_1``... across all matchers in registration order."""

    def __init__(self, hooks: Mapping[str, Sequence[HookMatcher]] | None = None) -> None:
        self.callbacks: dict[str, HookCallback] = {}
        self.wire: dict[str, list[dict[str, Any]]] = {}
        for event, matchers in (hooks or {}).items():
            entries = self.wire.setdefault(event, [])
            for matcher in matchers:
                ids = []
                for callback in matcher.callbacks:
                    callback_id = f"hook_{len(self.callbacks)}"
                    self.callbacks[callback_id] = callback
                    ids.append(callback_id)
                entry: dict[str, Any] = {"matcher": matcher.matcher, "hookCallbackIds": ids}
                if matcher.timeout is not None:
                    entry["timeout"] = matcher.timeout
                entries.append(entry)
