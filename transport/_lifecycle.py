"""The async-context-manager face shared by transports and sessions."""

from __future__ import annotations

from contextvars import ContextVar
from types import TracebackType
from typing import Self

_LEFT_BY_CTRL_C: ContextVar[bool] = ContextVar("ctlwire_left_by_ctrl_c", default=False)


def is_ctrl_c(exc: BaseException | None) -> bool:
    """A KeyboardInterrupt, also inside the exception group of a (trio) task group."""
    if isinstance(exc, BaseExceptionGroup):
        return exc.subgroup(KeyboardInterrupt) is not None
    return isinstance(exc, KeyboardInterrupt)


def closing_for_ctrl_c() -> bool:
    """Whether this close runs because a Ctrl-C is leaving an ``async with`` block of this
    task: the resource's own, or a wrapper's (a session closes its transport first)."""
    return _LEFT_BY_CTRL_C.get()


class AsyncResource:
    """``async with obj`` means ``await obj.start()`` ... ``await obj.aclose()``."""

    async def start(self) -> None:
        raise NotImplementedError

    async def aclose(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not is_ctrl_c(exc):
            await self.aclose()
            return
        token = _LEFT_BY_CTRL_C.set(True)
        try:
            await self.aclose()
        finally:
            _LEFT_BY_CTRL_C.reset(token)
