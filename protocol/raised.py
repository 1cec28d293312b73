"""What a handler's exception becomes: an error answer to the CLI, or raised further."""

from __future__ import annotations

from ctlwire.transport import being_cancelled


def going_up(exc: BaseException) -> BaseException | None:
    """What a handler's exception must raise instead of being answered: itself, when the
    task is being cancelled or the process is stopping; the bare KeyboardInterrupt or
    SystemExit when the handler's own task group wrapped one, so that it stops the
    program as it would unwrapped. A cancellation exception some awaited thing raised on
    its own (a future cancelled elsewhere) is the handler's failure: None, answered."""
    if isinstance(exc, BaseExceptionGroup):
        stops: BaseException | None = exc.subgroup((KeyboardInterrupt, SystemExit))
        while isinstance(stops, BaseExceptionGroup):
            stops = stops.exceptions[0]
        if stops is not None:
            return stops
    if isinstance(exc, KeyboardInterrupt | SystemExit | GeneratorExit) or being_cancelled():
        return exc
    return None


def describe(exc: BaseException) -> str:
    """An exception's text for an error answer, even when its ``__str__`` fails."""
    try:
        text = str(exc)
    except Exception:
        text = ""
    return text or f"{type(exc).__name__} raised"
