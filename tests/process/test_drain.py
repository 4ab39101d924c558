"""Four workers drain jobs while two submitter processes keep adding more."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from tests.process._harness import Fleet, all_final, chaos_job, ledger_check, submit, wait_until

pytestmark = [pytest.mark.process, pytest.mark.timeout(240)]

#: 5,000 jobs take about a minute here (4 workers at ~85 jobs/s with synchronous=FULL).
TOTAL = 5000
SUBMITTERS = 2
PER_SUBMITTER = 1000
WORKERS = 4


def submitter(db: Path, ledger: Path, count: int, ids: Path, seed: int) -> list[str]:
    """The command line of a submitter process (see `_submitter`)."""
    args = [db, ledger, count, ids, seed]
    return [sys.executable, "-m", "tests.process._submitter", *map(str, args)]


def test_drain_exactly_once(tmp_path: Path) -> None:
    db, ledger = tmp_path / "jobs.db", tmp_path / "ledger"
    started = time.monotonic()
    upfront = TOTAL - SUBMITTERS * PER_SUBMITTER
    ids = submit(
        db, [chaos_job("work", ledger=str(ledger), max_attempts=10) for _ in range(upfront)]
    )
    id_files = [tmp_path / f"ids-{n}" for n in range(SUBMITTERS)]
    with Fleet(db, tmp_path) as fleet:
        workers = [fleet.start(concurrency=2, log_level="WARNING") for _ in range(WORKERS)]
        submitters = [
            fleet.spawn(submitter(db, ledger, PER_SUBMITTER, path, seed))
            for seed, path in enumerate(id_files)
        ]
        for process in submitters:
            assert process.wait(timeout=180) == 0, "a submitter failed"
        for path in id_files:
            ids += path.read_text().split()
        assert len(ids) == TOTAL
        wait_until(lambda: all_final(db), 180, "every job to finish", interval=0.5)
    assert [w.process.returncode for w in workers] == [0] * WORKERS
    seconds = time.monotonic() - started
    ledger_check(
        db,
        ledger,
        faults=0,
        submitted=ids,
        name="drain",
        seed="0,1",
        started=started,
        rate=f"{TOTAL / seconds:.0f}/s",
    )
