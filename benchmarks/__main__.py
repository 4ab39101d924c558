"""`python -m benchmarks`: GigQ beside huey, same workloads, same run, exactly-once checked.

Prints progress to stderr, the Markdown table of medians to stdout, and writes every repeat
as JSON (default: `benchmarks/results/run-<UTC time>.json`). Exits 1 when a job ran twice or
never (or a worker failed), 2 on a usage error.
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
from typing import Any

from benchmarks import gigq_bench, huey_bench
from benchmarks.common import ROOT, WORKLOADS, BenchmarkError
from benchmarks.ledger import ExactlyOnceError
from benchmarks.table import NOT_INSTALLED, UNSUPPORTED, Cell, Series, render

DEFAULT_JOBS = 10_000
DEFAULT_REPEAT = 3
QUICK_JOBS = 1_000
QUICK_REPEAT = 1

Workload = Callable[[Path, int], float]


def _workloads(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name not in WORKLOADS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown workload(s) {', '.join(unknown) or '(none)'}; "
            f"choose from {', '.join(WORKLOADS)}"
        )
    return list(dict.fromkeys(names))


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line; `--quick` sets 1,000 jobs and 1 repeat unless they are given."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmark GigQ beside huey (SqliteHuey) on the same machine, same run.",
    )
    parser.add_argument(
        "--jobs", type=_positive, help=f"no-op jobs per workload (default {DEFAULT_JOBS})"
    )
    parser.add_argument(
        "--repeat", type=_positive, help=f"runs of each workload (default {DEFAULT_REPEAT})"
    )
    parser.add_argument(
        "--workloads",
        type=_workloads,
        default=list(WORKLOADS),
        help=f"comma-separated, from {','.join(WORKLOADS)} (default: all)",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="where to write the results")
    parser.add_argument(
        "--quick", action="store_true", help=f"{QUICK_JOBS} jobs, {QUICK_REPEAT} repeat"
    )
    parser.add_argument(
        "--tmp",
        type=Path,
        default=Path("/tmp") if Path("/tmp").is_dir() else Path(tempfile.gettempdir()),
        help="directory for the temporary databases; must be on local disk (default /tmp)",
    )
    parser.add_argument("--no-huey", action="store_true", help="measure GigQ only")
    args = parser.parse_args(argv)
    if args.jobs is None:
        args.jobs = QUICK_JOBS if args.quick else DEFAULT_JOBS
    if args.repeat is None:
        args.repeat = QUICK_REPEAT if args.quick else DEFAULT_REPEAT
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


def _gigq_version() -> str:
    import gigq

    return str(getattr(gigq, "__version__", "unknown"))


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    """Measure, print the table, write the JSON; the exit code."""
    huey_version = None if args.no_huey else huey_bench.version()
    systems: list[tuple[str, dict[str, Any]]] = [(gigq_bench.NAME, gigq_bench.WORKLOADS)]
    if huey_version is not None:
        systems.append((huey_bench.NAME, huey_bench.WORKLOADS))
    fs = filesystem(args.tmp)
    meta: dict[str, Any] = {
        "started": datetime.now(UTC).isoformat(),
        "jobs": args.jobs,
        "repeat": args.repeat,
        "workloads": args.workloads,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "gigq": _gigq_version(),
        "huey": huey_version,
        "tmp": str(args.tmp),
        "filesystem": fs,
        "setting": "WAL, synchronous=FULL, one worker, no-op jobs with one small dict",
    }
    _say(
        f"GigQ {meta['gigq']} vs huey {huey_version or '(' + NOT_INSTALLED + ')'}: "
        f"{args.jobs} jobs x {args.repeat} repeat(s), workloads {', '.join(args.workloads)}; "
        f"Python {meta['python']}, SQLite {meta['sqlite']}, {args.tmp} on {fs or 'unknown fs'}"
    )
    if fs in ("tmpfs", "ramfs"):
        _say(f"warning: {args.tmp} is {fs}; fsync costs nothing there, so this is not local disk")
    results: dict[str, dict[str, Series]] = {
        w: {name: Series(args.jobs) for name, _ in systems} for w in args.workloads
    }
    root = Path(tempfile.mkdtemp(prefix="gigq-bench-", dir=args.tmp))
    try:
        for repeat in range(args.repeat):
            # Alternate who goes first, so drift (page cache, thermal) favours neither.
            order = systems if repeat % 2 == 0 else list(reversed(systems))
            for workload in args.workloads:
                for name, table in order:
                    measure: Workload | None = table.get(workload)
                    if measure is None:
                        continue
                    workdir = Path(tempfile.mkdtemp(prefix=f"{name}-{workload}-", dir=root))
                    try:
                        seconds = measure(workdir, args.jobs)
                    finally:
                        shutil.rmtree(workdir, ignore_errors=True)
                    results[workload][name].seconds.append(seconds)
                    _say(
                        f"repeat {repeat + 1}/{args.repeat} {workload:<13} {name:<5} "
                        f"{args.jobs / seconds:>10,.0f} jobs/s ({seconds:.3f} s)"
                    )
    except ExactlyOnceError as err:
        _say(f"FAILED: exactly-once check: {err}")
        return 1
    except BenchmarkError as err:
        _say(f"FAILED: {err}")
        return 1
    finally:
        shutil.rmtree(root, ignore_errors=True)

    rows: list[tuple[str, Cell, Cell]] = []
    for workload in args.workloads:
        gigq_cell: Cell = results[workload][gigq_bench.NAME]
        huey_cell: Cell
        if huey_version is None:
            huey_cell = NOT_INSTALLED
        elif huey_bench.WORKLOADS.get(workload) is None:
            huey_cell = UNSUPPORTED
        else:
            huey_cell = results[workload][huey_bench.NAME]
        rows.append((workload, gigq_cell, huey_cell))
    print(
        f"\n{args.jobs} no-op jobs, median of {args.repeat} run(s); WAL, synchronous=FULL, "
        f"SQLite {meta['sqlite']}, {fs or 'unknown fs'}; higher is better\n"
    )
    print(render(rows))
    print(flush=True)

    report = {
        "meta": meta,
        "results": {
            w: {
                name: (cell.as_json() if isinstance(cell, Series) else cell)
                for name, cell in ((gigq_bench.NAME, g), (huey_bench.NAME, h))
            }
            for w, g, h in rows
        },
    }
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
