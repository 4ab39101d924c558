"""Click parameter types shared by the commands."""

from __future__ import annotations

import math
from typing import Any

import click


class FiniteFloat(click.FloatRange):
    """A FloatRange that also refuses NaN and infinities (which pass a range check)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


#: The most a count option takes: SQL LIMIT and OFFSET are 64-bit.
_MOST = 2**63 - 1


class Count(click.IntRange):
    """A whole number of at least `min` (a `--limit`). Past 64 bits it is refused, but
    `--help` shows only the lower bound: 9223372036854775807 there tells a reader nothing."""

    def __init__(self, min: int = 1) -> None:
        super().__init__(min=min)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if number > _MOST:
            self.fail(f"{number} is too large.", param, ctx)
        return number


__all__ = ["Count", "FiniteFloat"]
