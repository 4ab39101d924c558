"""GitHub Archive pipeline: count a range of GH Archive hours with GigQ, and write a report.

    python examples/github_archive.py                       # the bundled sample day, offline
    python examples/github_archive.py --date 2024-01-15     # download a real day (24 files)
    python examples/github_archive.py --start 2024-01-15-0 --end 2024-01-15-5
    python examples/github_archive.py --source ~/gharchive --date 2024-01-15   # files on disk

One workflow per range: a download job per hour file, an aggregate job per file (events by
type, stars per repository, busiest actors, pushes and commits per repository, malformed
lines), a merge job, and a report job writing report.md, summary.json and (with matplotlib)
events-per-hour.png. The jobs go to a SQLite queue (--db), and local `gigq worker` processes
run them. Every job has a unique key, so running the same command again does only what is
left: after Ctrl-C, a crash or a failed download, just run it again.

Without --start, --date or --source it runs on a sample day generated at first run (fixed
seed, ~3 MB, the exact GH Archive event format), so it works without internet.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent
sys.path.insert(0, str(EXAMPLES))

from gharchive import pipeline, sample, tasks  # noqa: E402 -- after the path is set

from gigq import JobQueue  # noqa: E402

FINAL = {"completed", "failed", "cancelled", "timeout"}
STAGES = ("download", "aggregate", "merge", "report")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Count GitHub events from GH Archive hour files with a GigQ workflow. "
        "Without hours or --source: a generated sample day, offline.",
    )
    when = parser.add_argument_group("which hours (UTC)")
    when.add_argument("--start", help="first hour, e.g. 2024-01-15-0 (a bare date: its hour 0)")
    when.add_argument(
        "--end", help="last hour, included (default: --start; a bare date: its hour 23)"
    )
    when.add_argument("--date", help="one whole day, e.g. 2024-01-15")
    when.add_argument("--hours", help="with --date: an hour or range of hours, e.g. 9-17")
    what = parser.add_argument_group("where the hour files come from")
    what.add_argument(
        "--source",
        metavar="DIR",
        help="read YYYY-MM-DD-H.json.gz files from DIR (without hours given: all of them)",
    )
    what.add_argument(
        "--sample",
        action="store_true",
        help="use generated sample files (the default when no hours or source are given)",
    )
    what.add_argument(
        "--base-url",
        default=tasks.GHARCHIVE_URL,
        help="GH Archive or a mirror (default: %(default)s)",
    )
    what.add_argument(
        "--timeout", type=float, default=60.0, help="network timeout in seconds (default: 60)"
    )
    run = parser.add_argument_group("running")
    run.add_argument("db_path", nargs="?", metavar="DB", help="the queue, the same as --db")
    run.add_argument("--db", help="the GigQ queue (default: RUN_DIR/gharchive.db)")
    run.add_argument(
        "--run-dir",
        help="holds the queue, data, work files, logs and reports "
        "(default: the folder of --db if given, else ./gharchive-run)",
    )
    run.add_argument("--out", help="report folder (default: RUN_DIR/report-START_END)")
    run.add_argument(
        "--workers", type=int, default=2, help="local worker processes (default: 2; 0: submit only)"
    )
    run.add_argument(
        "--concurrency", type=int, default=2, help="jobs at once per worker (default: 2)"
    )
    run.add_argument(
        "--top", type=int, default=tasks.TOP, help="length of the top lists (default: 10)"
    )
    run.add_argument(
        "--fresh", action="store_true", help="redo everything instead of reusing finished jobs"
    )
    args = parser.parse_args(argv)
    if args.workers < 0 or args.concurrency < 1:
        parser.error("--workers must be 0 or more and --concurrency 1 or more")
    if args.db and args.db_path:
        parser.error("give the queue once: DB or --db")
    args.db = args.db or args.db_path
    if args.run_dir is None:
        args.run_dir = str(Path(args.db).parent) if args.db else "gharchive-run"
    if args.sample and args.source:
        parser.error("give --sample or --source, not both")
    if args.hours and not args.date:
        parser.error("--hours goes with --date")
    if args.end and not args.start:
        parser.error("--end goes with --start")
    try:
        if args.date:
            if args.start or args.end:
                parser.error("give --date or --start/--end, not both")
            first, _, last = (args.hours or "0-23").partition("-")
            args.hour_list = pipeline.hour_range(
                f"{args.date}-{first}", f"{args.date}-{last or first}"
            )
        elif args.start:
            args.hour_list = pipeline.hour_range(args.start, args.end)
        elif args.source:
            args.hour_list = hours_in(Path(args.source))
            if not args.hour_list:
                parser.error(f"no YYYY-MM-DD-H.json.gz files in {args.source}")
        else:
            args.sample = True
            args.hour_list = pipeline.hour_range(sample.SAMPLE_DATE)
    except ValueError as exc:
        parser.error(str(exc))
    return args


def hours_in(folder: Path) -> list[str]:
    """The range from the first to the last hour file in `folder` (gaps are reported as
    missing hours)."""
    found = [
        pipeline.parse_hour(path.name.removesuffix(".json.gz"))
        for path in folder.glob("*.json.gz")
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}-\d{1,2}\.json\.gz", path.name)
    ]
    if not found:
        return []
    return pipeline.hour_range(pipeline.hour_name(min(found)), pipeline.hour_name(max(found)))


# -- local workers ------------------------------------------------------------------------------


def _die_with_parent() -> None:  # pragma: no cover -- runs in the child before exec
    """On Linux, a worker gets SIGTERM if this script dies, even by SIGKILL."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def start_workers(db: str, count: int, concurrency: int, log_dir: Path) -> list[subprocess.Popen]:
    """Start `count` workers: `python -m gigq_cli --db DB worker ...`, what you would type in
    as many terminals. Each leads its own session, so a Ctrl-C here reaches them once, from
    `stop_workers`, and they shut down gracefully (finish or hand back their jobs)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(EXAMPLES), env.get("PYTHONPATH")]))
    workers = []
    for n in range(1, count + 1):
        command = [
            sys.executable, "-m", "gigq_cli", "--db", db, "worker",
            "--worker-id", f"gharchive-{os.getpid()}-{n}",
            "--queue", pipeline.QUEUE,
            "--concurrency", str(concurrency),
            "--polling-interval", "1",
            "--grace", "20",
            "--log-level", "WARNING",
        ]  # fmt: skip
        log = open(log_dir / f"worker-{n}.log", "ab")  # noqa: SIM115 -- closed with the process
        workers.append(
            subprocess.Popen(
                command,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        )
        log.close()  # the child has its own copy
    return workers


def stop_workers(workers: list[subprocess.Popen]) -> None:
    """SIGTERM once each, and wait: running jobs finish (or are handed back) within grace."""
    for worker in workers:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
    for worker in workers:
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


# -- the run ------------------------------------------------------------------------------------


def progress_line(names: dict[str, str], statuses: dict[str, str]) -> str:
    parts = []
    for stage in STAGES:
        ids = [i for name, i in names.items() if name.split(" ")[0] == stage]
        done = sum(statuses[i] == "completed" for i in ids)
        ended = Counter(statuses[i] for i in ids if statuses[i] in FINAL - {"completed"})
        notes = ", ".join(f"{n} {status}" for status, n in sorted(ended.items()))
        parts.append(f"{stage} {done}/{len(ids)}" + (f" ({notes})" if notes else ""))
    return "  ".join(parts)


def watch(
    queue: JobQueue,
    names: dict[str, str],
    report_id: str,
    workers: list[subprocess.Popen],
    log_dir: Path,
) -> dict[str, str]:
    """Show progress until the report job is finished; returns every job's status."""
    ids = list(names.values())
    tty = sys.stdout.isatty()
    shown = ""
    while True:
        statuses = queue.wait(ids, timeout=0.5)
        line = progress_line(names, statuses)
        if line != shown:
            print(("\r  " if tty else "  ") + line, end="" if tty else "\n", flush=True)
            shown = line
        if statuses[report_id] in FINAL or all(s in FINAL for s in statuses.values()):
            if tty:
                print()
            return statuses
        if workers and all(w.poll() is not None for w in workers):
            if tty:
                print()
            raise SystemExit(f"Error: every worker exited; their logs are in {log_dir}")


def explain_failures(queue: JobQueue, names: dict[str, str], statuses: dict[str, str]) -> None:
    for name, job_id in names.items():
        if statuses[job_id] in FINAL - {"completed"}:
            status = queue.get_status(job_id)
            reason = status.get("error") or ""
            print(f"  {name}: {statuses[job_id]} {reason}".rstrip())


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    began = time.monotonic()
    hours: list[str] = args.hour_list
    run_dir = Path(args.run_dir)
    span = f"{hours[0]}_{hours[-1]}"
    db = args.db or str(run_dir / "gharchive.db")
    out_dir = Path(args.out) if args.out else run_dir / f"report-{span}"
    source = args.source
    if args.sample:
        source = str(run_dir / "sample")
        by_date: dict[str, list[int]] = {}
        for hour in hours:
            date, _, h = hour.rpartition("-")
            by_date.setdefault(date, []).append(int(h))
        if not all((Path(source) / f"{h}.json.gz").exists() for h in hours):
            print(f"Generating the sample hour files in {source} (fixed seed, once) ...")
        for date, hs in by_date.items():
            sample.generate(source, date=date, hours=hs)
    label = (
        "generated sample (GH Archive format)"
        if args.sample
        else f"files in {source}"
        if source
        else args.base_url
    )
    plan = pipeline.build(
        hours,
        data_dir=run_dir / "data",
        work_dir=run_dir / "work" / span,
        out_dir=out_dir,
        source_dir=source,
        base_url=args.base_url,
        source_label=label,
        download_timeout=args.timeout,
        top_n=args.top,
        generation=str(time.time_ns()) if args.fresh else "",
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    queue = JobQueue(db)
    names = plan.submit(queue)
    fresh = sum(job.id == names[job.name] for job in plan.jobs)
    print(f"Queue {db}: {len(hours)} hours ({hours[0]} to {hours[-1]}, UTC) from {label}.")
    report_id = names["report"]
    statuses = queue.wait(list(names.values()), timeout=0)
    done = sum(status == "completed" for status in statuses.values())
    if statuses[report_id] == "completed":
        print(f"Nothing to do: all {len(names)} jobs were completed by an earlier run.")
    elif fresh == len(names):
        print(f"Submitted {fresh} jobs.")
    else:
        print(
            f"Submitted {fresh} new jobs; {len(names) - fresh} were already there from an "
            f"earlier run ({done} completed), found by their unique keys."
        )
    workers: list[subprocess.Popen] = []
    if statuses[report_id] != "completed":
        if args.workers == 0:
            print(
                "No workers started (--workers 0). Run some, from the examples folder:\n"
                f"  cd {EXAMPLES} && gigq --db {Path(db).resolve()} worker --queue "
                f"{pipeline.QUEUE}\nthen run this command again to see the report."
            )
            return 0
        log_dir = run_dir / "logs"
        workers = start_workers(db, args.workers, args.concurrency, log_dir)
        print(
            f"Started {args.workers} worker{'s' if args.workers > 1 else ''} x "
            f"{args.concurrency} jobs at once "
            f"(`gigq --db {db} workers` lists them). Ctrl-C stops; re-run resumes."
        )
        try:
            statuses = watch(queue, names, report_id, workers, log_dir)
        except KeyboardInterrupt:
            print("\nInterrupted: stopping the workers (running jobs finish or are handed back).")
            stop_workers(workers)
            statuses = queue.wait(list(names.values()), timeout=0)
            done = sum(s == "completed" for s in statuses.values())
            print(
                f"{done} of {len(names)} jobs completed. Run the same command again to "
                f"finish the other {len(names) - done}."
            )
            return 130
        finally:
            stop_workers(workers)
    if statuses[report_id] != "completed":
        print("The report was not written; these jobs did not complete:")
        explain_failures(queue, names, statuses)
        print("Run the same command again to retry them (completed work is kept).")
        return 1
    result = queue.get_result(report_id)
    merged = queue.get_result(names["merge"])
    if not Path(result["report"]).is_file():
        print(f"The report {result['report']} was deleted; --fresh writes it again.")
        return 1
    print(
        f"Counted {merged['events']:,} events ({merged['malformed']} malformed lines skipped"
        + (f", missing hours: {len(merged['missing_hours'])}" if merged["missing_hours"] else "")
        + ")."
    )
    if merged["top_starred_repos"]:
        best = merged["top_starred_repos"][0]
        print(f"Most starred: {best['repo']} ({best['stars']} stars).")
    print(f"Report:  {result['report']}")
    print(f"Summary: {result['summary']}")
    print(
        f"Chart:   {result['chart']}" if result["chart"] else f"Chart:   none, {result['no_chart']}"
    )
    print(f"All {len(names)} jobs completed; this run took {time.monotonic() - began:.1f} s.")
    queue.close()
    return 0


if __name__ == "__main__":
    # `kill PID` stops the run like Ctrl-C does: workers shut down gracefully.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\nInterrupted.", file=sys.stderr)
        sys.exit(130)
