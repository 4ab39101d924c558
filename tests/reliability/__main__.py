"""The slow tier of docs/guarantees.md, run on demand:

    python -m tests.reliability --tier slow [--soak-minutes 60] [--only chaos,contention,...]

Runs the 20,000-job SIGKILL chaos with 3 seeds, 60 s of paced contention (p99 submit latency
<= 50 ms), an unpaced overload run (workers keep >= 20 % of their uncontended rate, WAL
<= 256 MB), a 30 s pinned reader (the WAL back under 64 MB within 10 s after it lets go) and
a soak (default an hour: kills, rolling restarts, pruning; RSS growth < 20 MB, WAL median
< 16 MB, p99 claim latency < 50 ms in every 5-minute window). Each run ends with the ledger
check and prints its one-line summary; at the end a Markdown table gives every figure with
its bound. Exits 1 if a run failed or a bound was missed. Smaller parameters (for a try) are
options; the bounds stay the same.
"""

from __future__ import annotations

import argparse
import functools
import math
import random
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.reliability._scenarios import (
    run_chaos,
    run_contention,
    run_drain_rate,
    run_soak,
)

RUNS = ("chaos", "contention", "overload", "pinned", "soak")

Row = tuple[str, str, Any, str, bool | None]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "inf" if math.isinf(value) else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items()) or "none"
    return str(value)


def table(rows: list[Row]) -> str:
    """The figures as a Markdown table."""
    lines = ["| run | figure | value | bound | ok |", "|---|---|---|---|---|"]
    for run, figure, value, bound, ok in rows:
        mark = "" if ok is None else ("yes" if ok else "**NO**")
        lines.append(f"| {run} | {figure} | {_fmt(value)} | {bound} | {mark} |")
    return "\n".join(lines)


def _chaos(args: argparse.Namespace, base: Path, rows: list[Row], seed: int, n: int) -> None:
    got = run_chaos(base / f"chaos-{n}", jobs=args.chaos_jobs, seed=seed)
    name = f"chaos seed {seed}"
    rows.append((name, "jobs", got["jobs"], "", None))
    rows.append((name, "kills", got["kills"], "", None))
    rows.append(
        (name, "extra executions", got["extra executions"],
         f"<= {got['allowed']}", got["extra executions"] <= got["allowed"])
    )  # fmt: skip
    rows.append((name, "jobs/s", got["jobs/s"], "", None))


def _contention(args: argparse.Namespace, base: Path, rows: list[Row]) -> None:
    got = run_contention(base / "contention", seconds=args.contention_seconds)
    name = f"contention {args.contention_seconds:g} s, 100 paced submitters"
    rows.append((name, "submits/s", got["submits/s"], "", None))
    rows.append((name, "errors reaching callers", got["errors"], "none", not got["errors"]))
    rows.append((name, "submit p50 ms", got["p50 ms"], "", None))
    rows.append((name, "submit p99 ms", got["p99 ms"], "<= 50", got["p99 ms"] <= 50))
    rows.append((name, "submit max ms", got["max ms"], "", None))
    rows.append((name, "WAL peak MiB", got["wal peak MiB"], "<= 64", got["wal peak MiB"] <= 64))


def _overload(args: argparse.Namespace, base: Path, rows: list[Row]) -> None:
    alone = run_drain_rate(base / "uncontended", jobs=2000)
    got = run_contention(
        base / "overload",
        seconds=args.overload_seconds,
        interval=0.0,
        drain_timeout=1800,
        name="overload",
    )
    name = f"overload {args.overload_seconds:g} s, unpaced"
    share = got["worker jobs/s"] / alone
    rows.append((name, "uncontended worker jobs/s", alone, "", None))
    rows.append((name, "worker jobs/s under overload", got["worker jobs/s"], "", None))
    rows.append((name, "share of uncontended", f"{share:.0%}", ">= 20%", share >= 0.2))
    rows.append((name, "submits/s", got["submits/s"], "", None))
    rows.append((name, "errors reaching callers", got["errors"], "none", not got["errors"]))
    rows.append((name, "WAL peak MiB", got["wal peak MiB"], "<= 256", got["wal peak MiB"] <= 256))


def _pinned(args: argparse.Namespace, base: Path, rows: list[Row]) -> None:
    got = run_contention(
        base / "pinned",
        seconds=args.pin_seconds + 17,
        interval=0.05,
        pin_reader=args.pin_seconds,
        name="pinned-reader",
    )
    name = f"pinned reader {args.pin_seconds:g} s"
    back = got["wal back under 64 MiB s"]
    rows.append((name, "WAL peak MiB (while pinned)", got["wal peak MiB"], "", None))
    rows.append((name, "s until WAL < 64 MiB after release", back, "<= 10", back <= 10))
    rows.append((name, "errors reaching callers", got["errors"], "none", not got["errors"]))


def _soak(args: argparse.Namespace, base: Path, rows: list[Row]) -> None:
    got = run_soak(base / "soak", minutes=args.soak_minutes)
    name = f"soak {args.soak_minutes:g} min"
    for figure in ("submits", "kills", "rolling restarts", "pruned", "windows"):
        rows.append((name, figure, got[figure], "", None))
    rows.append((name, "errors reaching callers", got["errors"], "none", not got["errors"]))
    growth = got["sentinel RSS growth MiB"]
    rows.append((name, "worker RSS growth MiB", growth, "< 20", growth < 20))
    median = got["wal median MiB"]
    rows.append((name, "WAL median MiB", median, "< 16", median < 16))
    worst = got["claim p99 ms (worst 5-min window)"]
    rows.append((name, "claim p99 ms, worst 5-min window", worst, "< 50", worst < 50))


#: The runs after chaos (which runs once per seed), in order.
_RUNS: dict[str, Callable[[argparse.Namespace, Path, list[Row]], None]] = {
    "contention": _contention,
    "overload": _overload,
    "pinned": _pinned,
    "soak": _soak,
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tests.reliability", description=__doc__)
    parser.add_argument("--tier", choices=["slow"], required=True)
    parser.add_argument("--only", default=",".join(RUNS), help=f"subset of {','.join(RUNS)}")
    parser.add_argument("--chaos-jobs", type=int, default=20_000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--contention-seconds", type=float, default=60.0)
    parser.add_argument("--overload-seconds", type=float, default=60.0)
    parser.add_argument("--pin-seconds", type=float, default=30.0)
    parser.add_argument("--soak-minutes", type=float, default=60.0)
    parser.add_argument("--tmp", type=Path, default=None, help="keep the runs' files here")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the tier; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    only = {name.strip() for name in args.only.split(",") if name.strip()}
    unknown = only - set(RUNS)
    if unknown:
        parser.error(f"unknown runs: {', '.join(sorted(unknown))}")
    base = args.tmp or Path(tempfile.mkdtemp(prefix="gigq-slow-tier-"))
    base.mkdir(parents=True, exist_ok=True)
    rows: list[Row] = []
    failed: list[str] = []

    def attempt(name: str, run: Callable[[], None]) -> None:
        began = time.monotonic()
        try:
            run()
        except Exception as err:  # one failed run must not hide the others' figures
            traceback.print_exc()
            failed.append(name)
            rows.append((name, "failed", f"{type(err).__name__}: {err}"[:200], "", False))
        rows.append((name, "wall time s", time.monotonic() - began, "", None))

    if "chaos" in only:
        for n in range(args.seeds):
            seed = random.randrange(2**32)
            attempt(f"chaos {n + 1}", functools.partial(_chaos, args, base, rows, seed, n))
    for name, run in _RUNS.items():
        if name in only:
            attempt(name, functools.partial(run, args, base, rows))

    print()
    print(table(rows))
    missed = [f"{run}: {figure}" for run, figure, _, _, ok in rows if ok is False]
    print()
    print(f"files in {base}")
    if missed:
        print("MISSED: " + "; ".join(missed))
        return 1
    print("every bound met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
