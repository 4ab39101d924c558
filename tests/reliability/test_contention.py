"""Contention (docs/guarantees.md): 100 paced submitters (10 processes x 10 threads)
and 4 workers for 15 s. No busy error (no error at all) reaches a caller, the WAL stays under
64 MB, every acknowledged submit is there and runs once (the ledger check). Submit latency
percentiles are printed; the p99 bound is asserted only in the slow tier."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability._scenarios import run_contention

pytestmark = [pytest.mark.process, pytest.mark.timeout(240)]


def test_contention(tmp_path: Path) -> None:
    figures = run_contention(tmp_path, seconds=15, interval=0.5)
    assert figures["errors"] == {}, figures["errors"]
    assert figures["wal peak MiB"] <= 64, figures
    assert figures["submits"] > 0
