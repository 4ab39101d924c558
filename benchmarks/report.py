"""What a run found, and how it is shown: the tables on stdout, the targets, the JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from benchmarks import fairness, targets
from benchmarks.common import CPU_WORKLOADS
from benchmarks.table import (
    EN_DASH,
    SHORT,
    UNSUPPORTED,
    Cell,
    ValueCell,
    Values,
    format_values,
    render,
    render_values,
)

GIGQ, HUEY = "GigQ", "huey"

#: The rows of the latency and start-up table: measure key, label, unit.
MEASURES = (
    ("p50_ms", "submit-to-start p50 (ms)", "ms"),
    ("p99_ms", "submit-to-start p99 (ms)", "ms"),
    ("max_ms", "submit-to-start max (ms)", "ms"),
    ("idle_cpu_pct", "idle worker CPU (% of a core)", "%"),
    ("import_ms", "import gigq (ms)", "ms"),
    ("help_ms", "gigq --help (ms)", "ms"),
)
#: The measures of the `startup` workload (the others are `latency`'s).
STARTUP = ("import_ms", "help_ms")

#: The rows of a scale table: key of a round (or of the whole run), label, unit.
SCALE_ROWS = (
    ("claim_median_ms", "claim, median (ms)", "ms"),
    ("claim_p90_ms", "claim, p90 (ms)", "ms"),
    ("submit_per_s", "submit one at a time (jobs/s)", "jobs/s"),
    ("bytes_per_job", "database bytes per job", "B"),
)


@dataclass
class Results:
    """Everything measured in one run, filled in as it goes."""

    #: Column order of the throughput table.
    systems: list[str]
    #: workload -> system -> repeats (or why there are none).
    rates: dict[str, dict[str, Cell]] = field(default_factory=dict)
    #: measure key -> system -> values over the repeats (latency and start-up).
    measures: dict[str, dict[str, ValueCell]] = field(default_factory=dict)
    #: scale shape -> one result per size, smallest first.
    scale: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    #: workload -> system -> its traced runs: `fsyncs` (n jobs), `jobs`, `one_job_fsyncs`,
    #: `per_job`, `traced_seconds` (n jobs).
    fsyncs: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    #: How fsyncs were counted (the strace command), or None when they were not.
    fsync_method: str | None = None
    #: Why fsyncs were not counted, or None when they were.
    fsync_reason: str | None = None
    #: One result of the `fairness` workload per repeat.
    fairness: list[dict[str, float]] = field(default_factory=list)

    def add_measures(self, system: str, got: dict[str, float]) -> None:
        """Append one repeat's latency or start-up measures of `system`."""
        for key, value in got.items():
            cell = self.measures[key][system]
            assert isinstance(cell, Values)
            cell.values.append(value)


#: The fairness measures: key of a result, label.
FAIRNESS = (
    ("idle_wait_ms", "longest a ready job waited while a worker was idle, one stretch (ms)"),
    ("idle_wait_total_ms", "the same, summed over one job's wait (ms)"),
    ("longest_wait_ms", "longest wait of any job from the drain's start (ms)"),
)


def format_fsyncs(counted: dict[str, dict[str, Any]], systems: list[str]) -> str:
    """Each system's fsyncs per job in column order, `a / b / c`; a dash where the system
    did not run the workload."""
    return " / ".join(
        f"{counted[s]['per_job']:.2f}" if s in counted else UNSUPPORTED for s in systems
    )


def fsync_column(results: Results) -> tuple[str, dict[str, str]]:
    """The throughput table's fsyncs/job column: its heading and each workload's text."""
    if results.fsync_reason is not None:
        return "fsyncs/job", {w: "not counted" for w in results.rates}
    names = " / ".join(SHORT.get(s, s) for s in results.systems)
    return f"fsyncs/job ({names})", {
        w: format_fsyncs(results.fsyncs.get(w, {}), results.systems) for w in results.rates
    }


def _fairness_lines(results: Results, repeat: int) -> list[str]:
    lines = [
        f"\nFairness, GigQ, {fairness.WORKERS} workers, {fairness.SHORT_JOBS} jobs of "
        f"{fairness.SHORT_SECONDS * 1000:g} ms and {fairness.LONG_JOBS} of "
        f"{fairness.LONG_SECONDS:g} s interleaved, median (min{EN_DASH}max) of {repeat} "
        "run(s); lower is better\n"
    ]
    for key, label in FAIRNESS:
        values = Values("ms", [r[key] for r in results.fairness])
        lines.append(f"- {label}: {format_values(values)}")
    return lines


def _json(cell: Cell | ValueCell) -> Any:
    return cell if isinstance(cell, str) else cell.as_json()


def _scale_table(kind: str, runs: list[dict[str, Any]], rounds: int, ops: int) -> str:
    stored = "pending jobs" if kind == "pending" else "waiting dependents"
    columns = [f"{r['size']:,} jobs" for r in runs]
    rows: list[tuple[str, dict[str, ValueCell]]] = []
    for key, label, unit in SCALE_ROWS:
        cells: dict[str, ValueCell] = {}
        for column, result in zip(columns, runs, strict=True):
            if key in result:
                cells[column] = Values(unit, [result[key]])
            else:
                cells[column] = Values(unit, [r[key] for r in result["rounds"]])
        rows.append((label, cells))
    caption = (
        f"\nScale, GigQ, {kind} ({stored} stored): median (min{EN_DASH}max) of {rounds} "
        f"round(s) of {ops} single claims and {ops} single submits\n"
    )
    return caption + "\n" + render_values(rows, columns, ("large/small", columns[-1], columns[0]))


def show(results: Results, meta: dict[str, Any]) -> dict[str, Any]:
    """Print the tables and the targets to stdout; returns the JSON report."""
    report: dict[str, Any] = {"meta": meta}
    lines: list[str] = []
    found: list[targets.Target] = []
    repeat, span = meta["repeat"], f"median (min{EN_DASH}max)"
    if results.rates:
        cpu = [w for w in results.rates if w in CPU_WORKLOADS]
        jobs = f"{meta['jobs']} jobs per workload"
        if cpu and meta["cpu_jobs"] != meta["jobs"]:
            jobs += f" ({meta['cpu_jobs']} in {', '.join(cpu)})"
        print(
            f"\n{jobs}, jobs/s, {span} of {repeat} run(s); WAL, "
            f"synchronous=FULL, SQLite {meta['sqlite']}, {meta['filesystem'] or 'unknown fs'};"
            " higher is better\n"
        )
        print(render(list(results.rates.items()), results.systems, fsync_column(results)))
        if results.fsync_reason is None:
            print(
                f"\nfsyncs/job: fsync and fdatasync calls of every process of a separate run "
                f"of each cell under `{results.fsync_method}`, less those of a one-job run "
                "(the fixed part: database, fill, start-up, checks), divided by the jobs less "
                "one; the rates above are from untraced runs."
            )
        else:
            print(f"\nfsyncs/job: not counted: {results.fsync_reason}.")
        report["results"] = {
            w: {n: _json(c) for n, c in cells.items()} for w, cells in results.rates.items()
        }
        report["fsyncs"] = {
            "counted": results.fsync_reason is None,
            "method": results.fsync_method,
            "reason": results.fsync_reason,
            "per_workload": results.fsyncs,
        }
        found += targets.throughput(results.rates)
        lines += [t.line() for t in found]
        scaling = targets.drain_scaling(results.rates)
        if scaling:
            lines.append(scaling)
    if results.measures:
        latency = meta["latency"]
        print(
            f"\nLatency ({latency['jobs']} jobs, one idle worker, one submit every "
            f"{latency['gap']:g} s) and start-up, {span} of {repeat} run(s); lower is better\n"
        )
        rows = [(label, results.measures[k]) for k, label, _ in MEASURES if k in results.measures]
        print(render_values(rows, [GIGQ, HUEY], ("GigQ/huey", GIGQ, HUEY)))
        report["measures"] = {
            k: {n: _json(c) for n, c in cells.items()} for k, cells in results.measures.items()
        }
        for target, unit in targets.latency(results.measures):
            found.append(target)
            lines.append(target.line(unit))
    if results.fairness:
        print("\n".join(_fairness_lines(results, repeat)))
        report["fairness"] = {
            "runs": results.fairness,
            **{
                key: Values("ms", [r[key] for r in results.fairness]).as_json()
                for key, _ in FAIRNESS
            },
        }
    if results.scale:
        for kind, runs in results.scale.items():
            print(_scale_table(kind, runs, repeat, meta["scale"]["ops"]))
        report["scale"] = results.scale
        scale_targets = targets.scale(results.scale)
        found += scale_targets
        lines += [t.line() for t in scale_targets]
    if lines:
        print("\nTargets of issue 8, from the medians above:\n")
        print("\n".join(lines))
    print(flush=True)
    report["targets"] = [t.as_json() for t in found]
    return report
