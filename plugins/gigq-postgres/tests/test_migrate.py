"""Moving a queue between SQLite and PostgreSQL: `export()` / `import_()` both ways, and
`gigq migrate --from jobs.db --to postgresql://...` as users run it.

The scenario (tests/contract/_migration.py) is a DAG with completed, failed,
cascade-cancelled, blocked, retrying, scheduled, unique-key and paused-queue jobs, key-value
entries and a registered worker. After the move every job and execution record equals the
source's, a worker on the target runs exactly what remained, and a requeue of the failed job
revives the dependents its failure cancelled.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from gigq_cli import create_cli
from gigq_core import Worker
from gigq_core.plugins import open_storage
from gigq_core.ports import Storage
from gigq_core.records import JobStatus, WorkerInfo
from gigq_core.testing import RecordingPlugin
from tests.contract._factory import stored
from tests.contract._migration import (
    DRAIN_ORDER,
    KV,
    PAUSED,
    all_jobs,
    assert_same_queue,
    build_scenario,
    drain,
    import_into,
    items_of,
)


@pytest.fixture
def sqlite_store(tmp_path: Path, plugin_manager: Any) -> Iterator[Storage]:
    """An empty SQLite store in tmp_path."""
    store = open_storage(str(tmp_path / "jobs.db"), None, pm=plugin_manager)
    try:
        yield store
    finally:
        store.close()


def run_worker(target: str, plugin_manager: Any, clock: Any) -> list[str]:
    """Run the ready jobs of `target` with a real worker (inline executor) on `clock`;
    returns the ids it started, in order."""
    recorder = RecordingPlugin()
    plugin_manager.register(recorder)
    worker = Worker(target, executor="inline", plugin_manager=plugin_manager, clock=clock)
    try:
        while worker.process_one():
            pass
    finally:
        worker.close()
        plugin_manager.unregister(recorder)
    failures = [kw for hook, kw in recorder.kwargs if hook == "gigq_job_failed"]
    assert not failures, failures
    return [key for hook, key in recorder.calls if hook == "gigq_job_started"]


def test_sqlite_to_postgres_copies_the_queue_exactly(sqlite_store, storage, clock):
    build_scenario(sqlite_store, clock)

    counts = import_into(storage, items_of(sqlite_store), clock.now())

    assert counts["job"] == len(all_jobs(sqlite_store))
    assert counts["kv"] == len(KV)
    assert counts["paused"] == 1
    assert counts["lost"] == 0
    assert_same_queue(sqlite_store, storage)
    assert storage.paused_queues() == frozenset({PAUSED})


def test_postgres_to_sqlite_copies_the_queue_exactly(sqlite_store, storage, clock):
    build_scenario(storage, clock)

    import_into(sqlite_store, items_of(storage), clock.now())

    assert_same_queue(storage, sqlite_store)


def test_a_worker_on_postgres_runs_exactly_what_remained(
    sqlite_store, storage, pg_url, plugin_manager, clock
):
    jobs = build_scenario(sqlite_store, clock)
    import_into(storage, items_of(sqlite_store), clock.now())
    clock.advance(2 * 3600)  # past the scheduled job and the retry

    ran = run_worker(pg_url, plugin_manager, clock)

    assert ran == [jobs[name] for name in DRAIN_ORDER]
    joined = json.loads(stored(storage, jobs["join"]).result or "null")
    assert joined["parent_results"][jobs["extract"]] == 3  # a result made on SQLite
    assert stored(storage, jobs["paused-work"]).status is JobStatus.PENDING
    assert drain(sqlite_store, clock.now()) == ran  # the source would have run the same


def test_requeue_on_postgres_revives_what_the_failure_cancelled(
    sqlite_store, storage, pg_url, plugin_manager, clock
):
    jobs = build_scenario(sqlite_store, clock)
    import_into(storage, items_of(sqlite_store), clock.now())

    [transition] = storage.requeue([jobs["transform"]], clock.now())

    assert [job.id for job in transition.revived] == [jobs["load"], jobs["report"]]
    clock.advance(2 * 3600)
    ran = run_worker(pg_url, plugin_manager, clock)
    revived = [jobs["transform"], jobs["load"], jobs["report"]]
    assert [i for i in ran if i in revived] == revived
    assert sorted(ran) == sorted([*revived, *(jobs[name] for name in DRAIN_ORDER)])


def test_new_jobs_on_postgres_come_after_the_imported_ones(sqlite_store, storage, clock, make_job):
    build_scenario(sqlite_store, clock)
    import_into(storage, items_of(sqlite_store), clock.now())

    job = make_job()
    storage.insert([job], clock.now())

    assert stored(storage, job.id).seq > max(j.seq for j in all_jobs(sqlite_store))


def test_import_into_a_postgres_queue_with_jobs_is_refused(sqlite_store, storage, clock, make_job):
    from gigq_core.transfer import TransferError

    build_scenario(sqlite_store, clock)
    existing = make_job()
    storage.insert([existing], clock.now())

    with pytest.raises(TransferError, match="already holds 1 job"):
        import_into(storage, items_of(sqlite_store), clock.now())

    assert [job.id for job in all_jobs(storage)] == [existing.id]


def test_gigq_migrate_moves_a_sqlite_queue_to_postgres(
    tmp_path, sqlite_store, storage, pg_url, plugin_manager, clock
):
    jobs = build_scenario(sqlite_store, clock)
    source = str(tmp_path / "jobs.db")
    cli = create_cli(plugin_manager)

    result = CliRunner().invoke(cli, ["--json", "migrate", "--from", source, "--to", pg_url])

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["from"] == source
    assert report["counts"]["job"] == len(jobs) and report["counts"]["lost"] == 0
    assert_same_queue(sqlite_store, storage)

    again = CliRunner().invoke(cli, ["migrate", "--from", source, "--to", pg_url])

    assert again.exit_code == 1
    assert again.stderr.strip().startswith("Error: the target ")
    assert "already holds" in again.stderr


def test_gigq_migrate_refuses_while_workers_are_live_on_postgres(
    tmp_path, storage, pg_url, plugin_manager, clock
):
    build_scenario(storage, clock)
    now = datetime.now(UTC)
    storage.register_worker(
        WorkerInfo(
            id="pg-worker",
            host=socket.gethostname(),
            pid=os.getpid(),
            started_at=now,
            last_heartbeat=now - timedelta(seconds=1),
        )
    )
    target = str(tmp_path / "back.db")

    result = CliRunner().invoke(
        create_cli(plugin_manager), ["migrate", "--from", pg_url, "--to", target]
    )

    assert result.exit_code == 75, result.output
    assert "pg-worker" in result.stderr
    assert not Path(target).exists()
