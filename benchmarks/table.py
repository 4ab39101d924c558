"""The results: repeats per workload and system, their medians, and the Markdown tables."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: What a cell shows when a system does not have the workload (huey has no batch enqueue).
UNSUPPORTED = "—"
NOT_INSTALLED = "not installed"
#: A system left out with `--systems` (or `--no-huey`).
SKIPPED = "not run"
#: The en dash of "min-max" (an escape, so linters do not take it for a hyphen).
EN_DASH = "\u2013"
#: The system every ratio column divides by another.
BASE = "GigQ"
#: Short names of the ratio columns' divisors.
SHORT = {"raw sqlite3": "raw"}


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


@dataclass
class Values:
    """One measure (latency in ms, CPU in %, bytes) over the repeats."""

    unit: str
    values: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        """The median over the repeats."""
        return statistics.median(self.values)

    def as_json(self) -> dict[str, Any]:
        """The measure for the JSON report."""
        return {
            "unit": self.unit,
            "values": self.values,
            "median": self.median,
            "min": min(self.values),
            "max": max(self.values),
        }


#: A cell: measured repeats, or why there is nothing to show.
Cell = Series | str
#: A cell of the latency and scale tables.
ValueCell = Values | str


def _number(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:,.1f}"
    return f"{value:,.2f}"


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


def format_values(cell: ValueCell) -> str:
    """`median (min-max)` of a measure, or the reason the cell is empty."""
    if isinstance(cell, str):
        return cell
    values = cell.values
    if len(values) == 1:
        return _number(values[0])
    return f"{_number(cell.median)} ({_number(min(values))}{EN_DASH}{_number(max(values))})"


def format_ratio(top: Cell | ValueCell, bottom: Cell | ValueCell) -> str:
    """One median over another (for rates, above 1: the first is faster), or a dash."""
    if isinstance(top, str) or isinstance(bottom, str) or not bottom.median:
        return UNSUPPORTED
    return f"{top.median / bottom.median:.2f}x"


def markdown(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    """A Markdown table, the first column left-aligned and the others right-aligned."""
    rows = [tuple(header), *(tuple(r) for r in body)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]

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
    return "\n".join([line(rows[0]), rule, *(line(r) for r in rows[1:])])


def render(
    rows: Sequence[tuple[str, Mapping[str, Cell]]],
    systems: Sequence[str],
    extra: tuple[str, Mapping[str, str]] | None = None,
) -> str:
    """The throughput table: workload | one column per system (jobs/s, median and min-max)
    | GigQ/<system> for every other system [| `extra`: a heading and each workload's text,
    a dash where it has none]. A system missing from a row shows a dash."""
    others = [s for s in systems if s != BASE]
    header = (
        "workload",
        *systems,
        *(f"{BASE}/{SHORT.get(s, s)}" for s in others),
        *((extra[0],) if extra else ()),
    )
    body = []
    for name, cells in rows:
        base = cells.get(BASE, UNSUPPORTED)
        body.append(
            (
                name,
                *(format_cell(cells.get(s, UNSUPPORTED)) for s in systems),
                *(format_ratio(base, cells.get(s, UNSUPPORTED)) for s in others),
                *((extra[1].get(name, UNSUPPORTED),) if extra else ()),
            )
        )
    return markdown(header, body)


def render_values(
    rows: Sequence[tuple[str, Mapping[str, ValueCell]]],
    columns: Sequence[str],
    ratio: tuple[str, str, str],
) -> str:
    """A table of measures: measure | one column per name | a ratio column. `ratio` is
    (heading, the column divided, the column it is divided by)."""
    heading, top, bottom = ratio
    header = ("measure", *columns, heading)
    body = [
        (
            label,
            *(format_values(cells.get(c, UNSUPPORTED)) for c in columns),
            format_ratio(cells.get(top, UNSUPPORTED), cells.get(bottom, UNSUPPORTED)),
        )
        for label, cells in rows
    ]
    return markdown(header, body)
