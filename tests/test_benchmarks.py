"""The benchmark runner: its exactly-once checks, its tables and targets, and quick runs of
every workload end to end (a few jobs each).

No timing is asserted (performance is measured by `benchmarks/`, never asserted); the
targets are checked only for how they read a given set of numbers.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import fairness, fsyncs, gigq_bench, jobs, ledger, raw_bench, targets
from benchmarks.__main__ import main
from benchmarks.common import THROUGHPUT, BenchmarkError, payloads, run_drain_worker
from benchmarks.report import Results, fsync_column
from benchmarks.table import NOT_INSTALLED, UNSUPPORTED, Series, Values, render, render_values
from gigq import Job

ROOT = Path(__file__).resolve().parent.parent
STRACE_INSTALLED = shutil.which("strace") is not None
HUEY_INSTALLED = importlib.util.find_spec("huey") is not None
LITEQUEUE_INSTALLED = importlib.util.find_spec("litequeue") is not None


def _run_quick(tmp_path: Path, *options: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    """`python -m benchmarks --quick ...` in a subprocess (bounded); its output and JSON."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIGQ_")}
    out = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", *options, "--json", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done, json.loads(out.read_text())


def test_ledger_accepts_each_id_exactly_once():
    check = ledger.verify("run", ["a", "b", "c"], ["c", "a", "b"])

    assert check.ok
    assert check.seen == 3


def test_ledger_reports_duplicates_losses_and_unknown_ids():
    check = ledger.compare("run", ["a", "b", "c"], ["a", "a", "b", "zz"])

    assert not check.ok
    assert check.duplicates == {"a": 2}
    assert check.lost == ["c"]
    assert check.unexpected == ["zz"]
    text = check.describe()
    assert "1 duplicated" in text and "1 lost" in text and "1 unknown" in text


def test_ledger_file_check_raises_on_a_duplicate(tmp_path: Path):
    book = tmp_path / "ledger"
    book.write_text("a\nb\nb\n")

    with pytest.raises(ledger.ExactlyOnceError, match="duplicated"):
        ledger.verify_ledger("drain", book, ["a", "b"])
    with pytest.raises(ledger.ExactlyOnceError, match="lost"):
        ledger.verify_ledger("drain", tmp_path / "missing", ["a"])


def test_table_shows_median_range_ratio_and_empty_cells():
    gigq = Series(1000, [1.0, 0.5, 2.0])  # 1,000 / 2,000 / 500 jobs/s
    huey = Series(1000, [0.5])  # 2,000 jobs/s

    table = render(
        [
            ("enqueue", {"GigQ": gigq, "huey": huey}),
            ("enqueue_batch", {"GigQ": gigq, "huey": UNSUPPORTED}),
            ("drain", {"GigQ": gigq, "huey": NOT_INSTALLED}),
        ],
        ["GigQ", "huey", "raw sqlite3"],
    )
    lines = table.splitlines()

    assert lines[0].startswith("| workload")
    assert "GigQ/huey" in lines[0] and "GigQ/raw" in lines[0]
    assert "1,000 (500\u20132,000)" in lines[2] and "2,000" in lines[2] and "0.50x" in lines[2]
    assert UNSUPPORTED in lines[3]
    assert NOT_INSTALLED in lines[4]


def test_measure_table_divides_the_named_columns():
    table = render_values(
        [("p50 (ms)", {"GigQ": Values("ms", [4.0, 5.0, 6.0]), "huey": Values("ms", [50.0])})],
        ["GigQ", "huey"],
        ("GigQ/huey", "GigQ", "huey"),
    )

    assert "5.00 (4.00\u20136.00)" in table and "50.0" in table and "0.10x" in table


def test_targets_read_the_medians():
    rates = {
        "drain": {"GigQ": Series(100, [0.01]), "huey": Series(100, [0.05])},  # 10,000 vs 2,000
        "drain_batch32": {"raw sqlite3": Series(100, [0.001])},  # 100,000
        "enqueue": {"GigQ": Series(100, [1.0]), "raw sqlite3": Series(100, [0.5])},
        "drain_w2": {"GigQ": Series(100, [0.02])},
    }

    found = {t.what: t for t in targets.throughput(rates)}

    assert found["drain, 1 worker: GigQ / huey"].met  # 5x >= 2x
    assert not found["drain, 1 worker: GigQ / raw sqlite3 claim 32 + batched completion"].met
    assert not found["submit one at a time: GigQ / raw sqlite3 single-row FULL inserts"].met
    assert len(found) == 3  # submit_many and the CPU scaling were not measured
    line = targets.drain_scaling(rates)
    assert line is not None and "2 workers 5,000/s (0.50x)" in line


def test_runner_exits_1_when_a_job_ran_twice(monkeypatch, tmp_path, capsys):
    def twice(workdir: Path, n: int) -> float:
        book = workdir / "ledger"
        book.write_text("job-1\njob-1\n")
        ledger.verify_ledger("GigQ drain", book, ["job-1"])
        return 1.0

    monkeypatch.setitem(gigq_bench.WORKLOADS, "drain", twice)

    code = main(
        [
            "--jobs",
            "1",
            "--repeat",
            "1",
            "--workloads",
            "drain",
            "--systems",
            "gigq",
            "--tmp",
            str(tmp_path),
            "--json",
            str(tmp_path / "r.json"),
        ]
    )

    assert code == 1
    assert "exactly-once" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()
    assert list(tmp_path.iterdir()) == []  # its temporary directories are gone


def test_quick_run_prints_a_table(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIGQ_")}
    out = tmp_path / "results.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--quick",
            "--workloads",
            "enqueue,drain",
            "--json",
            str(out),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert any(line.startswith("| workload") for line in lines), done.stdout
    assert "fsyncs/job" in lines[[line.startswith("| workload") for line in lines].index(True)]
    assert any(line.startswith("| enqueue ") for line in lines)
    assert any(line.startswith("| drain ") for line in lines)
    if not HUEY_INSTALLED:
        assert NOT_INSTALLED in done.stdout
    report = json.loads(out.read_text())
    assert report["results"]["drain"]["GigQ"]["jobs"] == 1000
    # Counted for real where strace can trace; otherwise the run says why, with no number.
    counted = report["fsyncs"]
    if counted["counted"]:
        drain = counted["per_workload"]["drain"]["GigQ"]
        assert drain["jobs"] == 1000 and drain["fsyncs"] > drain["one_job_fsyncs"] >= 1
        assert drain["per_job"] == (drain["fsyncs"] - drain["one_job_fsyncs"]) / 999
        # raw sqlite3: one FULL commit per row, one fsync of the WAL each.
        assert 0.95 <= counted["per_workload"]["enqueue"]["raw sqlite3"]["per_job"] <= 1.2
    else:
        assert not STRACE_INSTALLED or counted["reason"]
        assert counted["per_workload"] == {}
        assert "fsyncs/job: not counted:" in done.stdout


def test_raw_drain_fails_when_a_job_runs_twice(monkeypatch, tmp_path: Path):
    def twice(**params: str) -> None:  # the raw drain's job, run twice
        for _ in range(2):
            jobs.record(params["ledger"], params["id"])

    monkeypatch.setattr(raw_bench, "noop", twice)

    with pytest.raises(ledger.ExactlyOnceError, match="duplicated"):
        raw_bench.drain_batch32(tmp_path, 5)


def test_parallel_drain_fails_when_jobs_are_missing(tmp_path: Path):
    db = tmp_path / "gigq.db"
    with gigq_bench._open(db) as queue:
        queue.submit_many(
            Job("noop", gigq_bench.noop, params=p) for p in payloads(6, tmp_path / "ledger")
        )

    # Two burst workers run the 6 jobs, then stop: one job short of the 7 expected.
    with pytest.raises(BenchmarkError, match="6 of 7 jobs completed"):
        run_drain_worker("gigq", db, 7, workers=2)


def test_quick_run_checks_the_new_throughput_workloads_and_scale(tmp_path: Path):
    done, report = _run_quick(
        tmp_path,
        "--jobs",
        "12",
        "--workloads",
        "enqueue,enqueue_batch,drain_batch32,drain_w2,drain_w4,drain_inline,drain_cpu1ms_w1,"
        "drain_cpu1ms_w2,scale",
        "--scale-sizes",
        "20,40",
        "--scale-waiting",
        "20,40",
        "--scale-ops",
        "10",
        "--no-fsyncs",
    )

    for workload in (
        "enqueue_batch",
        "drain_batch32",
        "drain_w2",
        "drain_w4",
        "drain_inline",
        "drain_cpu1ms_w2",
    ):
        assert any(line.startswith(f"| {workload} ") for line in done.stdout.splitlines())
    results = report["results"]
    assert set(results) == set(THROUGHPUT) - {"drain"}
    assert results["drain_w4"]["GigQ"]["jobs"] == 12
    assert results["drain_inline"]["GigQ"]["jobs"] == 12
    assert len(results["drain_cpu1ms_w2"]["GigQ"]["seconds"]) == 1
    assert results["drain_batch32"]["raw sqlite3"]["jobs"] == 12
    assert results["drain_batch32"]["GigQ"] == UNSUPPORTED
    if HUEY_INSTALLED:
        assert results["drain_w2"]["huey"]["jobs"] == 12
        assert results["drain_inline"]["huey"]["jobs"] == 12
    if LITEQUEUE_INSTALLED:
        assert results["enqueue_batch"]["litequeue"]["jobs"] == 12
    else:
        assert results["enqueue_batch"]["litequeue"] == NOT_INSTALLED
    for kind in ("pending", "waiting"):
        assert [r["size"] for r in report["scale"][kind]] == [20, 40]
        assert all(r["bytes_per_job"] > 0 for r in report["scale"][kind])
        assert all(len(r["rounds"][0]["claim_seconds"]) == 10 for r in report["scale"][kind])
    assert report["fsyncs"] == {
        "counted": False,
        "method": None,
        "reason": "--no-fsyncs was given",
        "per_workload": {},
    }
    assert any("GigQ 2 workers / 1 worker" in t["what"] for t in report["targets"])
    assert "Targets of issue 8" in done.stdout


def test_quick_run_measures_latency_and_startup(tmp_path: Path):
    done, report = _run_quick(
        tmp_path,
        "--workloads",
        "latency,startup,fairness",
        "--latency-jobs",
        "4",
        "--latency-gap",
        "0.01",
        "--idle-seconds",
        "0.2",
        "--startup-runs",
        "1",
    )

    measures = report["measures"]
    assert set(measures) == {"p50_ms", "p99_ms", "max_ms", "idle_cpu_pct", "import_ms", "help_ms"}
    assert len(measures["p50_ms"]["GigQ"]["values"]) == 1
    # huey has no start-up measure; without huey (CI installs only the dev extra) the
    # whole column says so instead.
    assert measures["import_ms"]["huey"] == (UNSUPPORTED if HUEY_INSTALLED else NOT_INSTALLED)
    if HUEY_INSTALLED:
        assert len(measures["p99_ms"]["huey"]["values"]) == 1
    assert "submit-to-start p50" in done.stdout
    assert report["fairness"]["idle_wait_ms"]["values"][0] >= 0
    assert len(report["fairness"]["runs"]) == 1
    assert "longest a ready job waited while a worker was idle" in done.stdout
    assert "fsyncs" not in report  # no throughput workload, nothing to count


STRACE_SUMMARY = """\
% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 86.79    0.000092          46         2           fsync
 13.21    0.000014          14      1,00         1 fdatasync
 10.00    0.000010          10        17         3 fdatasync
------ ----------- ----------- --------- --------- ----------------
100.00    0.000106          35        19         4 total
"""


def test_strace_summary_parser_counts_calls_per_syscall():
    # "1,00" is not a count: the row is skipped, not misread.
    assert fsyncs.parse_summary(STRACE_SUMMARY) == {"fsync": 2, "fdatasync": 17}
    assert fsyncs.parse_summary("") == {}  # strace -c writes nothing when no call was made
    assert (
        fsyncs.parse_summary("strace: attach: ptrace(PTRACE_SEIZE, 1): Operation not permitted")
        == {}
    )


def test_fsyncs_are_not_counted_without_strace(monkeypatch, tmp_path: Path):
    monkeypatch.setattr(fsyncs.shutil, "which", lambda name: None)
    counter = fsyncs.Counter()

    assert counter.probe() == "strace is not installed"
    with pytest.raises(BenchmarkError, match="strace is not installed"):
        counter.count("gigq_bench", "drain", 10, tmp_path)


@pytest.mark.skipif(not STRACE_INSTALLED, reason="strace is not installed")
def test_fsync_counter_counts_a_raw_sqlite3_enqueue(tmp_path: Path):
    counter = fsyncs.Counter()
    if counter.probe() is not None:
        pytest.skip(counter.reason or "")

    calls, seconds = counter.count("raw_bench", "enqueue", 20, tmp_path)

    # One FULL commit per row, plus a few for creating the database and the checks.
    assert 20 <= calls <= 40
    assert seconds > 0
    assert list(tmp_path.iterdir()) == []


def test_fsync_column_shows_each_system_or_why_not():
    results = Results(["GigQ", "huey", "raw sqlite3"])
    results.rates = {"drain": {}, "drain_batch32": {}}
    results.fsyncs = {
        "drain": {"GigQ": {"per_job": 0.25}, "huey": {"per_job": 1.0}},
        "drain_batch32": {"raw sqlite3": {"per_job": 0.0625}},
    }

    heading, cells = fsync_column(results)

    assert heading == "fsyncs/job (GigQ / huey / raw)"
    assert cells == {"drain": "0.25 / 1.00 / \u2014", "drain_batch32": "\u2014 / \u2014 / 0.06"}
    table = render([("drain", {})], ["GigQ"], (heading, cells))
    assert table.splitlines()[0].endswith("| fsyncs/job (GigQ / huey / raw) |")
    results.fsync_reason = "strace is not installed"
    assert fsync_column(results) == (
        "fsyncs/job",
        {"drain": "not counted", "drain_batch32": "not counted"},
    )


def test_idle_wait_on_hand_made_intervals():
    # b is idle from 2 to 4 while the first job waits; the second never waits.
    busy = {"a": [(0.0, 10.0)], "b": [(0.0, 2.0), (4.0, 10.0)]}
    assert fairness.idle_waits([(1.0, 5.0), (0.0, 1.0)], busy) == (2.0, 2.0)

    # Two idle stretches within one wait: the longest stretch, and their sum.
    busy = {"a": [(0.0, 10.0)], "b": [(0.0, 2.0), (2.5, 3.0), (4.0, 10.0)]}
    assert fairness.idle_waits([(0.0, 5.0)], busy) == (1.0, 1.5)

    # Both idle at once counts once; overlapping busy intervals of one worker merge.
    busy = {"a": [(0.0, 1.0), (0.5, 0.8), (3.0, 10.0)], "b": [(0.0, 1.0), (2.0, 10.0)]}
    assert fairness.idle_waits([(0.0, 5.0)], busy) == (2.0, 2.0)

    # Before the drain's first start nobody counts as idle: the wait is clipped to the span.
    busy = {"a": [(0.0, 10.0)], "b": [(1.0, 10.0)]}
    assert fairness.idle_waits([(-5.0, 2.0)], busy) == (1.0, 1.0)

    # A worker that ran nothing was idle throughout; no worker at all, nothing to measure.
    assert fairness.idle_waits([(2.0, 3.0)], {"a": [(0.0, 10.0)], "b": []}) == (1.0, 1.0)
    assert fairness.idle_waits([(2.0, 3.0)], {}) == (0.0, 0.0)


def test_fairness_mix_spreads_the_long_jobs():
    sleeps = fairness.mix(200, 4)

    spots = [i for i, s in enumerate(sleeps) if s == fairness.LONG_SECONDS]
    assert len(sleeps) == 204 and spots == [25, 76, 127, 178]
    assert fairness.mix(3, 0) == [fairness.SHORT_SECONDS] * 3
