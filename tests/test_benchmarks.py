"""The benchmark runner: its exactly-once check, its table, and one quick run end to end.

No timing is asserted (DESIGN.md: performance is measured by `benchmarks/`, never asserted).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import gigq_bench, ledger
from benchmarks.__main__ import main
from benchmarks.table import NOT_INSTALLED, UNSUPPORTED, Series, render

ROOT = Path(__file__).resolve().parent.parent
HUEY_INSTALLED = importlib.util.find_spec("huey") is not None


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
            ("enqueue", gigq, huey),
            ("enqueue_batch", gigq, UNSUPPORTED),
            ("drain", gigq, NOT_INSTALLED),
        ]
    )
    lines = table.splitlines()

    assert lines[0].startswith("| workload")
    assert "1,000 (500\u20132,000)" in lines[2] and "2,000" in lines[2] and "0.50x" in lines[2]
    assert UNSUPPORTED in lines[3]
    assert NOT_INSTALLED in lines[4]


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
            "--no-huey",
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
