"""The results: repeats per workload and system, their medians, and the Markdown table."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

#: What a cell shows when a system does not have the workload (huey has no batch enqueue).
UNSUPPORTED = "—"
NOT_INSTALLED = "not installed"
#: The en dash of "min-max" (an escape, so linters do not take it for a hyphen).
EN_DASH = "\u2013"


@dataclass
class Series:
    """The timed seconds of each repeat of one workload on one system, for `n` jobs."""

    n: int
    seconds: list[float] = field(default_factory=list)

    @property
    def rates(self) -> list[float]:
        """Jobs per second of each repeat."""
        return [self.n / s if s > 0 else float("inf") for s in self.seconds]

    @property
    def median(self) -> float:
        """Median jobs per second over the repeats."""
        return statistics.median(self.rates)

    def as_json(self) -> dict[str, Any]:
        """The series for the JSON report."""
        rates = self.rates
        return {
            "jobs": self.n,
            "seconds": self.seconds,
            "jobs_per_s": rates,
            "median": statistics.median(rates),
            "min": min(rates),
            "max": max(rates),
        }


#: A cell: measured repeats, or why there is nothing to show.
Cell = Series | str


def _rate(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:,.1f}"


def format_cell(cell: Cell) -> str:
    """`median (min-max)` in jobs/s (en dash), or the reason the cell is empty."""
    if isinstance(cell, str):
        return cell
    rates = cell.rates
    if len(rates) == 1:
        return _rate(rates[0])
    return f"{_rate(cell.median)} ({_rate(min(rates))}{EN_DASH}{_rate(max(rates))})"


def format_ratio(gigq: Cell, huey: Cell) -> str:
    """GigQ's median over huey's (above 1: GigQ is faster), or a dash."""
    if isinstance(gigq, str) or isinstance(huey, str):
        return UNSUPPORTED
    return f"{gigq.median / huey.median:.2f}x"


def render(rows: list[tuple[str, Cell, Cell]]) -> str:
    """A Markdown table: workload | GigQ | huey | GigQ/huey, rates in jobs/s."""
    header = (
        "workload",
        f"GigQ jobs/s median (min{EN_DASH}max)",
        f"huey jobs/s median (min{EN_DASH}max)",
        "GigQ/huey",
    )
    body = [(name, format_cell(g), format_cell(h), format_ratio(g, h)) for name, g, h in rows]
    widths = [max(len(r[i]) for r in (header, *body)) for i in range(len(header))]

    def line(cells: tuple[str, ...]) -> str:
        padded = [
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "| " + " | ".join(padded) + " |"

    rule = (
        "|"
        + "|".join("-" * (w + 1) + ":" if i else ":" + "-" * (w + 1) for i, w in enumerate(widths))
        + "|"
    )
    return "\n".join([line(header), rule, *(line(r) for r in body)])
