"""The BEGIN IMMEDIATE audit (docs/guarantees.md).

Every test of the root suite runs under the `write_audit` fixture of tests/conftest.py
(every connection gigq_sqlite opens in the pytest process is traced). This module makes sure
the audit is not vacuous: it catches a deferred write, it sees every kind of write of a
representative workload in this process, and it audits real worker processes too."""

from __future__ import annotations

import json
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from gigq import JobQueue
from gigq_cli import create_cli
from gigq_core import Worker, Workflow, make_plugin_manager
from tests.process._harness import (
    LEASE,
    Fleet,
    all_final,
    chaos_job,
    ledger_check,
    stop,
    submit,
    wait_until,
)
from tests.reliability._audit import WriteAudit


def test_the_audit_catches_a_write_in_a_deferred_transaction(
    tmp_path: Path, write_audit: WriteAudit
) -> None:
    pm = make_plugin_manager(load_entrypoints=False)
    with JobQueue(str(tmp_path / "jobs.db"), plugin_manager=pm) as queue:
        database = queue.storage._db  # adapter internals: a write the adapter never makes
        database.read(lambda conn: conn.execute("INSERT INTO kv VALUES ('t', 'k', 'v')"))
        with database.locked() as conn:
            conn.execute("DELETE FROM kv")
    found = [(v.transaction, v.sql.split()[0]) for v in write_audit.violations]
    assert found == [("deferred", "INSERT"), ("none", "DELETE")]
    write_audit.violations.clear()  # expected here: the fixture must not fail this test


def test_a_representative_workload_writes_only_in_begin_immediate(
    tmp_path: Path, write_audit: WriteAudit
) -> None:
    """Submit, workflows, claim, heartbeat, finish (complete, retry, fail), rescue, cancel,
    requeue, prune, kv, pause, register, doctor, backup and upgrade, in this process."""
    started = time.monotonic()
    db, ledger = str(tmp_path / "jobs.db"), tmp_path / "ledger"
    pm = make_plugin_manager(load_entrypoints=False)
    with JobQueue(db, plugin_manager=pm) as queue:
        # Claimed by a worker that is no process, with its lease already over: a rescue.
        ghost = queue.submit(chaos_job("work", ledger=str(ledger)))
        [held] = queue.storage.claim("ghost", 1, queue.clock.now(), 0.01)
        assert held.id == ghost
        flow = Workflow("flow")
        parent = flow.add_job(chaos_job("work", ledger=str(ledger)))
        flow.add_job(chaos_job("work", ledger=str(ledger)), depends_on=[parent])
        ids = [ghost, *flow.submit_all(queue)]
        failing = chaos_job("always_abort", ledger=str(ledger))
        retried = chaos_job("fail_first", ledger=str(ledger), marker=str(tmp_path / "m"))
        retried.retry_delay = 0
        ids += queue.submit_many([failing, retried])
        cancelled = queue.submit(chaos_job("work", ledger=str(ledger)))
        assert queue.cancel(cancelled)
        ids.append(cancelled)
        queue.pause_queue("paused")
        queue.resume_queue("paused")
        queue.storage.kv_set("audit", "key", "value")
        queue.storage.kv_set("audit", "key", None)

    worker = Worker(
        db,
        plugin_manager=pm,
        executor="process",
        concurrency=2,
        polling_interval=0.1,
        lease=1.0,
        heartbeat=0.2,
        sweep_interval=0.2,
        retention=3600,
        worker_id="audited",
    )
    try:
        stopper = _stop_when_final(worker, db, timeout=60)
        worker.start()
        stopper.join(timeout=5)
    finally:
        worker.close()

    with JobQueue(db, plugin_manager=pm) as queue:
        assert queue.requeue_job(failing.id)
        assert queue.cancel(failing.id)
        assert queue.clear_completed(before_timestamp=time.time() + 60) >= 1
    cli = create_cli(pm)
    for args in (["doctor"], ["backup", str(tmp_path / "copy.db")], ["upgrade"]):
        result = CliRunner().invoke(cli, ["--db", db, *args])
        # A healthy store: doctor may warn (exit 0), never fail; backup and upgrade succeed.
        assert result.exit_code == 0, (args, result.output)
    assert {"INSERT", "UPDATE", "DELETE"} <= set(write_audit.writes), write_audit.writes
    print(
        f"[begin-immediate in-process] connections={write_audit.connections} "
        f"writes={sum(write_audit.writes.values())} {dict(write_audit.writes)} "
        f"violations={len(write_audit.violations)} time={time.monotonic() - started:.1f}s"
    )


def _stop_when_final(worker: Worker, db: str, timeout: float) -> threading.Thread:
    """A thread that stops `worker` once no job is pending or running."""

    def watch() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not all_final(db):
            time.sleep(0.05)
        worker.stop()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


@pytest.mark.process
@pytest.mark.timeout(120)
def test_worker_processes_write_only_in_begin_immediate(tmp_path: Path) -> None:
    """Two real workers (each under the audit), a rescue of a dead worker's job, retries,
    failures, a dependency, a cancel and retention sweeps; then the ledger check."""
    started = time.monotonic()
    db, ledger = tmp_path / "jobs.db", tmp_path / "ledger"
    ids = submit(db, [chaos_job("work", ledger=str(ledger), ms=5) for _ in range(40)])
    parent = chaos_job("work", ledger=str(ledger))
    child = chaos_job("work", ledger=str(ledger))
    child.dependencies = [parent.id]
    retried = chaos_job("fail_first", ledger=str(ledger), marker=str(tmp_path / "m"))
    retried.retry_delay = 0
    aborted = chaos_job("always_abort", ledger=str(ledger))
    ids += submit(db, [parent, child, retried, aborted])
    pm = make_plugin_manager(load_entrypoints=False)
    with JobQueue(str(db), plugin_manager=pm) as queue:
        [lost] = queue.storage.claim("ghost", 1, datetime.now(UTC), 0.01)
    reports = [tmp_path / f"audit-{n}.json" for n in range(2)]
    with Fleet(db, tmp_path) as fleet, open(tmp_path / "workers.log", "wb") as log:
        workers = [
            fleet.spawn(
                [
                    sys.executable,
                    "-m",
                    "tests.reliability._audited_worker",
                    str(report),
                    "--db",
                    str(db),
                    "worker",
                    "--worker-id",
                    f"a{n}",
                    "--lease",
                    str(LEASE),
                    "--heartbeat",
                    "0.3",
                    "--polling-interval",
                    "0.2",
                    "--concurrency",
                    "2",
                ],
                # Retention on, but longer than the test: the prune runs and deletes nothing
                # (the ledger check needs every job).
                env={"GIGQ_RETENTION": "3600"},
                stderr=log,
            )
            for n, report in enumerate(reports)
        ]
        wait_until(lambda: all_final(db), 60, "the workers to drain the queue")
        late = submit(db, [chaos_job("work", ledger=str(ledger))])
        with JobQueue(str(db), plugin_manager=pm) as queue:
            queue.cancel(late[0])
        time.sleep(1.5)  # a retention sweep or two
        codes = [stop(process) for process in workers]
    assert codes == [0, 0], codes
    findings = [json.loads(report.read_text()) for report in reports]
    violations = [v for found in findings for v in found["violations"]]
    writes = sum(sum(found["writes"].values()) for found in findings)
    print(
        f"[begin-immediate workers] workers=2 connections="
        f"{sum(f['connections'] for f in findings)} writes={writes} "
        f"violations={len(violations)} time={time.monotonic() - started:.1f}s"
    )
    assert not violations, violations[:5]
    assert writes > 40
    ledger_check(
        db,
        ledger,
        faults=1,  # not a fault: the retried job runs twice by design
        submitted=[*ids, lost.id, *late] if lost.id not in ids else [*ids, *late],
        expect=None,
        name="begin-immediate workers",
        started=started,
    )
