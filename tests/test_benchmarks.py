"""The benchmark runner: its exactly-once checks, its tables and targets, and quick runs of
every workload end to end (a few jobs each).

No timing is asserted (DESIGN.md: performance is measured by `benchmarks/`, never asserted);
the targets are checked only for how they read a given set of numbers.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import gigq_bench, jobs, ledger, raw_bench, targets
from benchmarks.__main__ import main
from benchmarks.common import THROUGHPUT, BenchmarkError, payloads, run_drain_worker
from benchmarks.table import NOT_INSTALLED, UNSUPPORTED, Series, Values, render, render_values
from gigq import Job

ROOT = Path(__file__).resolve().parent.parent
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
    assert any(line.startswith("| enqueue ") for line in lines)
    assert any(line.startswith("| drain ") for line in lines)
    if not HUEY_INSTALLED:
        assert NOT_INSTALLED in done.stdout
    report = json.loads(out.read_text())
    assert report["results"]["drain"]["GigQ"]["jobs"] == 1000


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
    assert any("GigQ 2 workers / 1 worker" in t["what"] for t in report["targets"])
    assert "Targets of issue 8" in done.stdout


def test_quick_run_measures_latency_and_startup(tmp_path: Path):
    done, report = _run_quick(
        tmp_path,
        "--workloads",
        "latency,startup",
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
