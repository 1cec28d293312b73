"""The async-context-manager face shared by transports and sessions."""

from __future__ import annotations

from types import TracebackType
from typing import Self


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
        await self.aclose()
