"""After a prune the SQLite adapter gives the pages the deleted jobs held back to the file
system (auto_vacuum is INCREMENTAL): all of them, up to VACUUM_PAGES, not one."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from gigq_core.testing import FakeClock
from gigq_sqlite import SqliteStorage
from tests.contract._factory import job_record


def pragma(path: Path, name: str) -> int:
    """A PRAGMA's value read through a separate plain connection."""
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute(f"PRAGMA {name}").fetchone()[0])
    finally:
        conn.close()


def test_a_prune_gives_every_freed_page_back_to_the_file_system(tmp_path: Path) -> None:
    # Python's sqlite3 steps `PRAGMA incremental_vacuum(N)` once, which frees one page.
    clock = FakeClock()
    db = tmp_path / "jobs.db"
    storage = SqliteStorage(db)
    try:
        jobs = [job_record(clock.now(), description="x" * 8000) for _ in range(5)]
        storage.insert(jobs, clock.now())
        storage.cancel([job.id for job in jobs], clock.now(), "to prune")
        pages = pragma(db, "page_count")
        clock.advance(10)
        assert storage.prune(clock.now(), ["cancelled"]) == len(jobs)
        assert pragma(db, "freelist_count") == 0
        # Each job's description alone filled two pages.
        assert pragma(db, "page_count") <= pages - 2 * len(jobs)
    finally:
        storage.close()
