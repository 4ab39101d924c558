"""The derived lines: each of issue 8's targets, computed from the medians of this run.

A target whose workloads were not all measured is left out. Nothing here fails a run: the
lines say "met" or "not met", and the JSON keeps the same verdicts.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from benchmarks.table import Cell, Series, ValueCell, Values

GIGQ, HUEY, LITEQUEUE, RAW = "GigQ", "huey", "litequeue", "raw sqlite3"


@dataclass(frozen=True)
class Target:
    """One target: what is compared, its value, the goal, and whether it was met."""

    what: str
    value: float
    goal: str
    met: bool

    def line(self, unit: str = "x") -> str:
        """A Markdown list item."""
        verdict = "met" if self.met else "NOT met"
        return f"- {self.what}: {self.value:.2f}{unit} (target {self.goal}): {verdict}"

    def as_json(self) -> dict[str, Any]:
        """The target for the JSON report."""
        return asdict(self)


def _median(cell: Cell | ValueCell | None) -> float | None:
    if isinstance(cell, Series | Values):
        return cell.median
    return None


def _ratio(top: Cell | None, bottom: Cell | None) -> float | None:
    a, b = _median(top), _median(bottom)
    if a is None or b is None or not b:
        return None
    return a / b


def throughput(rates: Mapping[str, Mapping[str, Cell]]) -> list[Target]:
    """The targets on jobs/s: drain vs huey and vs raw, submit vs raw, submit_many vs
    litequeue, and the CPU-bound scaling from 1 to 2 workers."""

    def cell(workload: str, system: str) -> Cell | None:
        return rates.get(workload, {}).get(system)

    checks: list[tuple[str, float | None, str, Callable[[float], bool]]] = [
        (
            "drain, 1 worker: GigQ / huey",
            _ratio(cell("drain", GIGQ), cell("drain", HUEY)),
            ">= 2x",
            lambda v: v >= 2.0,
        ),
        (
            "drain, 1 worker: GigQ / raw sqlite3 claim 32 + batched completion",
            _ratio(cell("drain", GIGQ), cell("drain_batch32", RAW)),
            ">= 0.30x",
            lambda v: v >= 0.30,
        ),
        (
            "submit one at a time: GigQ / raw sqlite3 single-row FULL inserts",
            _ratio(cell("enqueue", GIGQ), cell("enqueue", RAW)),
            ">= 0.80x, within 20%",
            lambda v: v >= 0.80,
        ),
        (
            "submit_many: GigQ / litequeue batched put",
            _ratio(cell("enqueue_batch", GIGQ), cell("enqueue_batch", LITEQUEUE)),
            ">= 0.70x",
            lambda v: v >= 0.70,
        ),
        (
            "1 ms CPU jobs: GigQ 2 workers / 1 worker",
            _ratio(cell("drain_cpu1ms_w2", GIGQ), cell("drain_cpu1ms_w1", GIGQ)),
            ">= 1.7x",
            lambda v: v >= 1.7,
        ),
    ]
    return [Target(what, v, goal, ok(v)) for what, v, goal, ok in checks if v is not None]


def drain_scaling(rates: Mapping[str, Mapping[str, Cell]], system: str = GIGQ) -> str | None:
    """The no-op drain at 1, 2 and 4 workers in one line (reported, no target)."""
    names = (("drain", 1), ("drain_w2", 2), ("drain_w4", 4))
    found = [(w, _median(rates.get(n, {}).get(system))) for n, w in names]
    measured = [(w, v) for w, v in found if v is not None]
    if len(measured) < 2:
        return None
    base = dict(measured).get(1)
    parts = []
    for workers, value in measured:
        part = f"{workers} worker{'s' if workers > 1 else ''} {value:,.0f}/s"
        if base and workers > 1:
            part += f" ({value / base:.2f}x)"
        parts.append(part)
    return f"- {system} no-op drain: " + ", ".join(parts)


def latency(measures: Mapping[str, Mapping[str, ValueCell]]) -> list[tuple[Target, str]]:
    """Submit-to-start p50 and p99, idle CPU, `import gigq` and `gigq --help`, with units."""
    checks = (
        ("p50_ms", "GigQ submit-to-start p50, one idle worker", "<= 5 ms", 5.0, " ms"),
        ("p99_ms", "GigQ submit-to-start p99, one idle worker", "<= 15 ms", 15.0, " ms"),
        ("idle_cpu_pct", "GigQ idle worker CPU", "< 2 % of a core", 2.0, " %"),
        ("import_ms", "import gigq", "< 50 ms", 50.0, " ms"),
        ("help_ms", "gigq --help", "< 250 ms", 250.0, " ms"),
    )
    found = []
    for key, what, goal, limit, unit in checks:
        value = _median(measures.get(key, {}).get(GIGQ))
        if value is None:
            continue
        strict = goal.startswith("<") and not goal.startswith("<=")
        met = value < limit if strict else value <= limit
        found.append((Target(what, value, goal, met), unit))
    return found


def scale(runs: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[Target]:
    """For each shape, the largest size against the smallest: claim latency (median) and
    submit rate each within 1.5x."""
    found = []
    for kind, sizes in runs.items():
        if len(sizes) < 2:
            continue
        small, large = sizes[0], sizes[-1]

        def med(run: Mapping[str, Any], key: str) -> float:
            return statistics.median(r[key] for r in run["rounds"])

        label = f"scale ({kind}) {large['size']:,} vs {small['size']:,} jobs"
        claim = med(large, "claim_median_ms") / med(small, "claim_median_ms")
        submit = med(small, "submit_per_s") / med(large, "submit_per_s")
        found.append(Target(f"{label}: claim latency large/small", claim, "<= 1.5x", claim <= 1.5))
        found.append(Target(f"{label}: submit rate small/large", submit, "<= 1.5x", submit <= 1.5))
    return found
