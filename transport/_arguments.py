"""Checks of the transport's constructor arguments: a bad one is a TypeError or
ValueError that names it, raised before anything is started."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence


def checked_argv(argv: Sequence[str]) -> list[str]:
    """``argv`` as a list of strings; a lone string is refused (no shell, ever)."""
    if isinstance(argv, str | bytes):
        raise TypeError("argv must be a list of arguments, not a string")
    if not isinstance(argv, Sequence) or not argv:
        raise TypeError("argv must be a non-empty list of arguments")
    return [os.fspath(a) for a in argv]


def check_count(name: str, value: int, least: int) -> None:
    """``value`` is an int (not a bool) of at least ``least``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {value!r}")
    if value < least:
        raise ValueError(f"{name} must be at least {least}, not {value}")


def check_seconds(name: str, value: float) -> float:
    """``value`` is a number of seconds >= 0 (not NaN)."""
    if not isinstance(value, int | float) or math.isnan(value) or value < 0:
        raise ValueError(f"{name} must be a number of seconds >= 0, not {value!r}")
    return value
