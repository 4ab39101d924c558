"""`python -m benchmarks`: GigQ beside huey, litequeue and raw sqlite3, same workloads, same
run, exactly-once checked.

Prints progress to stderr; to stdout, the Markdown table of medians (jobs/s), the latency
and start-up table, the scale tables when `scale` ran, and one line per target of issue 8;
and writes every repeat as JSON (default: `benchmarks/results/run-<UTC time>.json`). Exits 1
when a job ran twice or never (or a worker failed), 2 on a usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from benchmarks import (
    fairness,
    gigq_bench,
    huey_bench,
    latency,
    litequeue_bench,
    raw_bench,
    scale,
    startup,
)
from benchmarks.common import (
    CPU_WORKLOADS,
    DEFAULT_WORKLOADS,
    ROOT,
    THROUGHPUT,
    WORKLOADS,
    BenchmarkError,
)
from benchmarks.fsyncs import Counter
from benchmarks.ledger import ExactlyOnceError
from benchmarks.report import MEASURES, STARTUP, Results, show
from benchmarks.table import NOT_INSTALLED, SKIPPED, UNSUPPORTED, Cell, Series, ValueCell, Values

DEFAULT_JOBS = 10_000
#: Jobs of the CPU-bound drains at most, unless `--cpu-jobs` says otherwise: they cost 1 ms
#: of CPU each, and 10,000 would take the default run well past 10 minutes on 2 cores.
DEFAULT_CPU_JOBS = 2_000
DEFAULT_REPEAT = 3
QUICK_JOBS = 1_000
QUICK_REPEAT = 1
#: `latency`: jobs submitted, the pause between them, and the idle CPU sample.
LATENCY_JOBS, QUICK_LATENCY_JOBS = 200, 50
LATENCY_GAP = 0.02
IDLE_SECONDS, QUICK_IDLE_SECONDS = 5.0, 2.0
#: `startup`: runs of `import gigq` and of `gigq --help` per repeat.
STARTUP_RUNS, QUICK_STARTUP_RUNS = 5, 2
#: `scale`: jobs stored (pending, and waiting dependents), and claims/submits per round.
SCALE_SIZES = (1_000, 100_000)
SCALE_OPS, QUICK_SCALE_OPS = 500, 100

#: Every system, by its `--systems` key, in column order.
SYSTEMS: dict[str, Any] = {
    "gigq": gigq_bench,
    "huey": huey_bench,
    "litequeue": litequeue_bench,
    "raw": raw_bench,
}

T = TypeVar("T")


def _names(text: str, known: tuple[str, ...], what: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    if names == ["all"]:
        return list(known)
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown {what} {', '.join(unknown) or '(none)'}; choose from {', '.join(known)}"
        )
    return [name for name in known if name in names]  # in table order


def _workloads(text: str) -> list[str]:
    return _names(text, WORKLOADS, "workload(s)")


def _systems(text: str) -> list[str]:
    return _names(text, tuple(SYSTEMS), "system(s)")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {value}")
    return value


def _sizes(text: str) -> list[int]:
    """Comma-separated sizes (`1000,1_000_000`), smallest first, each once."""
    return sorted({_positive(part.strip().replace("_", "")) for part in text.split(",")})


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line; `--quick` sets 1,000 jobs and 1 repeat unless they are given."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmark GigQ beside huey, litequeue and raw sqlite3, same machine, "
        "same run.",
    )
    parser.add_argument(
        "--jobs", type=_positive, help=f"jobs per throughput workload (default {DEFAULT_JOBS})"
    )
    parser.add_argument(
        "--cpu-jobs",
        type=_positive,
        help=f"jobs of the drain_cpu1ms_* workloads (default: {DEFAULT_CPU_JOBS:,} or --jobs, "
        "whichever is smaller)",
    )
    parser.add_argument(
        "--repeat", type=_positive, help=f"runs of each workload (default {DEFAULT_REPEAT})"
    )
    parser.add_argument(
        "--workloads",
        type=_workloads,
        default=list(DEFAULT_WORKLOADS),
        help=f"comma-separated from {','.join(WORKLOADS)}, or 'all' (default: all but scale)",
    )
    parser.add_argument(
        "--systems",
        type=_systems,
        default=list(SYSTEMS),
        help=f"comma-separated from {','.join(SYSTEMS)} (default: all; GigQ always runs)",
    )
    parser.add_argument("--no-huey", action="store_true", help="leave huey out")
    parser.add_argument(
        "--no-fsyncs",
        action="store_true",
        help="do not count fsyncs per job (one extra traced run of each throughput cell)",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="where to write the results")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK_JOBS} jobs, {QUICK_REPEAT} repeat, shorter latency and scale rounds",
    )
    parser.add_argument(
        "--tmp",
        type=Path,
        default=Path("/tmp") if Path("/tmp").is_dir() else Path(tempfile.gettempdir()),
        help="directory for the temporary databases; must be on local disk (default /tmp)",
    )
    latency_group = parser.add_argument_group("latency and startup")
    latency_group.add_argument(
        "--latency-jobs", type=_positive, help=f"jobs submitted (default {LATENCY_JOBS})"
    )
    latency_group.add_argument(
        "--latency-gap",
        type=_seconds,
        default=LATENCY_GAP,
        help=f"seconds between submits (default {LATENCY_GAP})",
    )
    latency_group.add_argument(
        "--idle-seconds",
        type=_seconds,
        help=f"seconds of idle CPU sampling (default {IDLE_SECONDS:g})",
    )
    latency_group.add_argument(
        "--startup-runs",
        type=_positive,
        help=f"startup: runs of each command per repeat (default {STARTUP_RUNS})",
    )
    scale_group = parser.add_argument_group("scale")
    scale_group.add_argument(
        "--scale-sizes",
        type=_sizes,
        default=list(SCALE_SIZES),
        help="pending jobs stored, comma-separated (default 1000,100000; the issue's "
        "target: 1000,1000000)",
    )
    scale_group.add_argument(
        "--scale-waiting",
        type=_sizes,
        default=list(SCALE_SIZES),
        help="waiting dependents stored, comma-separated (default 1000,100000)",
    )
    scale_group.add_argument(
        "--scale-ops",
        type=_positive,
        help=f"claims and submits timed per round (default {SCALE_OPS})",
    )
    args = parser.parse_args(argv)
    if args.jobs is None:
        args.jobs = QUICK_JOBS if args.quick else DEFAULT_JOBS
    if args.cpu_jobs is None:
        args.cpu_jobs = min(args.jobs, DEFAULT_CPU_JOBS)
    if args.repeat is None:
        args.repeat = QUICK_REPEAT if args.quick else DEFAULT_REPEAT
    if args.latency_jobs is None:
        args.latency_jobs = QUICK_LATENCY_JOBS if args.quick else LATENCY_JOBS
    if args.idle_seconds is None:
        args.idle_seconds = QUICK_IDLE_SECONDS if args.quick else IDLE_SECONDS
    if args.startup_runs is None:
        args.startup_runs = QUICK_STARTUP_RUNS if args.quick else STARTUP_RUNS
    if args.scale_ops is None:
        args.scale_ops = QUICK_SCALE_OPS if args.quick else SCALE_OPS
    if args.scale_ops < 10:
        parser.error("--scale-ops must be at least 10")
    if "gigq" not in args.systems:
        args.systems.insert(0, "gigq")
    if args.no_huey and "huey" in args.systems:
        args.systems.remove("huey")
    if args.json is None:
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        args.json = ROOT / "benchmarks" / "results" / f"run-{stamp}.json"
    return args


def filesystem(path: Path) -> str | None:
    """The type of the filesystem holding `path` (Linux only; None elsewhere)."""
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return None
    best, kind = "", None
    target = str(path.resolve())
    for entry in mounts:
        fields = entry.split()
        if len(fields) < 3:
            continue
        point = fields[1]
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, fields[2]
    return kind


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _in_workdir(root: Path, label: str, measure: Callable[..., T], *args: Any) -> T:
    """`measure(workdir, *args)` in a fresh temporary directory under `root`, removed
    afterwards."""
    workdir = Path(tempfile.mkdtemp(prefix=f"{label.replace(' ', '-')}-", dir=root))
    try:
        return measure(workdir, *args)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _meta(args: argparse.Namespace, versions: dict[str, str | None]) -> dict[str, Any]:
    return {
        "started": datetime.now(UTC).isoformat(),
        "jobs": args.jobs,
        "cpu_jobs": args.cpu_jobs,
        "repeat": args.repeat,
        "workloads": args.workloads,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "versions": versions,
        "gigq": versions[gigq_bench.NAME],
        "huey": versions[huey_bench.NAME],
        "tmp": str(args.tmp),
        "filesystem": filesystem(args.tmp),
        "setting": "WAL, synchronous=FULL, jobs taking one small dict",
        "latency": {"jobs": args.latency_jobs, "gap": args.latency_gap, "idle": args.idle_seconds},
        "startup_runs": args.startup_runs,
        "scale": {
            "pending": args.scale_sizes,
            "waiting": args.scale_waiting,
            "ops": args.scale_ops,
        },
    }


def _plan(
    args: argparse.Namespace, versions: dict[str, str | None]
) -> tuple[Results, list[tuple[str, Any]]]:
    """The empty results (cells that will stay empty say why) and the systems to measure."""
    names = [m.NAME for m in SYSTEMS.values()]
    active = [(m.NAME, m) for m in SYSTEMS.values() if versions[m.NAME] is not None]
    absent = {
        m.NAME: SKIPPED if key not in args.systems else NOT_INSTALLED
        for key, m in SYSTEMS.items()
        if versions[m.NAME] is None
    }
    results = Results(names)
    modules = dict(active)
    for workload in (w for w in args.workloads if w in THROUGHPUT):
        row: dict[str, Cell] = {}
        for name in names:
            if name not in modules:
                row[name] = absent[name]
            elif modules[name].WORKLOADS.get(workload) is None:
                row[name] = UNSUPPORTED
            else:
                row[name] = Series(args.cpu_jobs if workload in CPU_WORKLOADS else args.jobs)
        results.rates[workload] = row
    for key, _, unit in MEASURES:
        wanted = "startup" if key in STARTUP else "latency"
        if wanted not in args.workloads:
            continue
        huey: ValueCell = absent.get(huey_bench.NAME, UNSUPPORTED)
        if huey_bench.NAME in modules and wanted == "latency":
            huey = Values(unit)
        results.measures[key] = {gigq_bench.NAME: Values(unit), huey_bench.NAME: huey}
    if "scale" in args.workloads:
        results.scale = {kind: [] for kind in scale.KINDS}
    return results, active


def _repeat(
    args: argparse.Namespace, results: Results, active: list[tuple[str, Any]], root: Path, r: int
) -> None:
    """One repeat of every throughput workload, then latency and start-up."""
    # Alternate who goes first, so drift (page cache, thermal) favours no one.
    order = active if r % 2 == 0 else active[::-1]
    step = f"repeat {r + 1}/{args.repeat}"
    for workload, row in results.rates.items():
        for name, module in order:
            cell = row[name]
            if not isinstance(cell, Series):
                continue
            seconds = _in_workdir(root, f"{name}-{workload}", module.WORKLOADS[workload], cell.n)
            cell.seconds.append(seconds)
            _say(
                f"{step} {workload:<15} {name:<11} "
                f"{cell.n / seconds:>10,.0f} jobs/s ({seconds:.3f} s, {cell.n} jobs)"
            )
    if "latency" in args.workloads:
        pairs = [(gigq_bench.NAME, latency.measure_gigq)]
        if isinstance(results.measures["p50_ms"][huey_bench.NAME], Values):
            pairs.append((huey_bench.NAME, latency.measure_huey))
        for name, measure in pairs if r % 2 == 0 else pairs[::-1]:
            got = _in_workdir(
                root,
                f"{name}-latency",
                measure,
                args.latency_jobs,
                args.latency_gap,
                args.idle_seconds,
            )
            results.add_measures(name, got)
            _say(
                f"{step} latency         {name:<11} p50 {got['p50_ms']:.1f} ms, "
                f"p99 {got['p99_ms']:.1f} ms, idle CPU {got['idle_cpu_pct']:.2f} %"
            )
    if "fairness" in args.workloads:
        found = _in_workdir(root, "GigQ-fairness", fairness.measure)
        results.fairness.append(found)
        _say(
            f"{step} fairness        GigQ        longest idle wait {found['idle_wait_ms']:.1f} ms"
            f" ({found['idle_wait_total_ms']:.1f} ms summed), longest wait "
            f"{found['longest_wait_ms']:.0f} ms"
        )
    if "startup" in args.workloads:
        got = _in_workdir(root, "GigQ-startup", startup.measure, args.startup_runs)
        results.add_measures(gigq_bench.NAME, got)
        _say(
            f"{step} startup         GigQ        import gigq {got['import_ms']:.1f} ms, "
            f"gigq --help {got['help_ms']:.0f} ms"
        )


def _scale(args: argparse.Namespace, results: Results, root: Path) -> None:
    """Each shape at each size: filled once, measured in `--repeat` rounds."""
    for kind in scale.KINDS:
        for size in args.scale_sizes if kind == "pending" else args.scale_waiting:
            found = _in_workdir(
                root, f"GigQ-scale-{kind}", scale.measure, kind, size, args.repeat, args.scale_ops
            )
            results.scale[kind].append(found)
            for number, one in enumerate(found["rounds"], 1):
                _say(
                    f"round {number}/{args.repeat} scale {kind:<7} {size:>9,} jobs: claim "
                    f"median {one['claim_median_ms']:.3f} ms, p90 {one['claim_p90_ms']:.3f} ms,"
                    f" submit {one['submit_per_s']:,.0f}/s, {found['bytes_per_job']:,.0f} B/job"
                )


def _fsyncs(
    args: argparse.Namespace, results: Results, active: list[tuple[str, Any]], root: Path
) -> None:
    """Two traced runs of each throughput cell, after the timed ones, of `n` jobs and of
    one: the fsyncs per job beyond the fixed part, (calls(n) - calls(1)) / (n - 1)."""
    if not results.rates:
        return
    counter = Counter()
    reason = "--no-fsyncs was given" if args.no_fsyncs else counter.probe()
    if reason is not None:
        results.fsync_reason = reason
        _say(f"fsyncs/job not counted: {reason}")
        return
    results.fsync_method = counter.method
    for workload, row in results.rates.items():
        counted = results.fsyncs.setdefault(workload, {})
        for name, module in active:
            cell = row[name]
            if not isinstance(cell, Series):
                continue
            key = module.__name__.rsplit(".", 1)[-1]
            calls, seconds = counter.count(key, workload, cell.n, root)
            # A one-job run pays the same fixed part (database, fill, start-up, checks).
            base = counter.count(key, workload, 1, root)[0] if cell.n > 1 else 0
            per_job = (calls - base) / max(1, cell.n - 1)
            counted[name] = {
                "fsyncs": calls,
                "jobs": cell.n,
                "one_job_fsyncs": base,
                "per_job": per_job,
                "traced_seconds": seconds,
            }
            _say(
                f"fsyncs          {workload:<15} {name:<11} {per_job:>10.3f} per job "
                f"({calls} in {cell.n} jobs, {base} in 1; traced run {seconds:.3f} s)"
            )


def run(args: argparse.Namespace) -> int:
    """Measure, print the tables and the targets, write the JSON; the exit code."""
    versions = {m.NAME: m.version() if key in args.systems else None for key, m in SYSTEMS.items()}
    meta = _meta(args, versions)
    fs = meta["filesystem"]
    cpu = ""
    if any(w in CPU_WORKLOADS for w in args.workloads) and args.cpu_jobs != args.jobs:
        cpu = f" ({args.cpu_jobs} CPU-bound)"
    _say(
        ", ".join(f"{name} {version or '(not measured)'}" for name, version in versions.items())
        + f": {args.jobs} jobs{cpu} x {args.repeat} repeat(s), workloads "
        f"{', '.join(args.workloads)}; Python {meta['python']}, SQLite {meta['sqlite']}, "
        f"{args.tmp} on {fs or 'unknown fs'}"
    )
    if fs in ("tmpfs", "ramfs"):
        _say(f"warning: {args.tmp} is {fs}; fsync costs nothing there, so this is not local disk")
    results, active = _plan(args, versions)
    root = Path(tempfile.mkdtemp(prefix="gigq-bench-", dir=args.tmp))
    try:
        for r in range(args.repeat):
            _repeat(args, results, active, root, r)
        _fsyncs(args, results, active, root)
        if "scale" in args.workloads:
            _scale(args, results, root)
    except ExactlyOnceError as err:
        _say(f"FAILED: exactly-once check: {err}")
        return 1
    except BenchmarkError as err:
        _say(f"FAILED: {err}")
        return 1
    finally:
        shutil.rmtree(root, ignore_errors=True)
    report = show(results, meta)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    _say(f"results written to {args.json}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m benchmarks`."""
    return run(parse_args(argv))


if __name__ == "__main__":
    start = time.perf_counter()
    code = main()
    _say(f"benchmark finished in {time.perf_counter() - start:.1f} s")
    sys.exit(code)
