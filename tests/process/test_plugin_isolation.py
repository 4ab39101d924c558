"""Plugin isolation in a real `gigq worker`: an installed plugin whose lifecycle hook raises
SystemExit or KeyboardInterrupt, hangs, or that fails at import never breaks the worker's
promises: jobs complete exactly once, the worker keeps its leases (no other worker rescues
its jobs), SIGTERM stops it within the grace period, and a broken plugin is reported once."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.process._harness import (
    HEARTBEAT,
    ROOT,
    Fleet,
    all_final,
    chaos_job,
    executions,
    is_alive,
    job_row,
    ledger_check,
    read_ledger,
    stop,
    submit,
    wait_until,
)

pytestmark = [pytest.mark.process, pytest.mark.timeout(120)]

HUNG = "has not returned from gigq_job_succeeded"


def install_plugin(folder: Path, name: str, source: str) -> None:
    """A module `gigq_test_<name>` with entry point `<name>` of group gigq, importable from
    `folder` (as an installed distribution would be)."""
    module = f"gigq_test_{name}"
    (folder / f"{module}.py").write_text(source, encoding="utf-8")
    info = folder / f"{module}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: gigq-test-{name}\nVersion: 1.0\n", encoding="utf-8"
    )
    (info / "entry_points.txt").write_text(f"[gigq]\n{name} = {module}\n", encoding="utf-8")


def succeeded_hook(calls: Path, then: str) -> str:
    """A plugin's source: gigq_job_succeeded appends the job's id to `calls`, then runs
    `then` (a statement)."""
    return (
        "import os, time\n"
        "from gigq import hookimpl\n\n"
        "@hookimpl\n"
        "def gigq_job_succeeded(job):\n"
        f"    fd = os.open({str(calls)!r}, os.O_APPEND | os.O_WRONLY | os.O_CREAT, 0o600)\n"
        "    os.write(fd, (job.id + '\\n').encode())\n"
        "    os.close(fd)\n"
        f"    {then}\n"
    )


def plugins(tmp_path: Path, **sources: str) -> dict[str, str]:
    """Install each plugin NAME=SOURCE, and a well-behaved `recorder` (its calls go to
    tmp_path/recorder); returns the environment of a worker that loads them."""
    folder = tmp_path / "plugins"
    folder.mkdir()
    install_plugin(folder, "recorder", succeeded_hook(tmp_path / "recorder", "pass"))
    for name, source in sources.items():
        install_plugin(folder, name, source)
    return {"PYTHONPATH": os.pathsep.join([str(folder), str(ROOT)])}


def lines(path: Path) -> list[str]:
    """The lines of a calls file (none when it does not exist yet)."""
    return path.read_text().split() if path.exists() else []


@pytest.mark.parametrize("raised", ["SystemExit(3)", "KeyboardInterrupt()"])
def test_a_hook_raising_systemexit_or_keyboardinterrupt_stops_nothing(
    tmp_path: Path, raised: str
) -> None:
    db, ledger = tmp_path / "jobs.db", tmp_path / "ledger"
    env = plugins(tmp_path, raising=succeeded_hook(tmp_path / "raising", f"raise {raised}"))
    ids = submit(db, [chaos_job("work", ledger=str(ledger)) for _ in range(3)])
    with Fleet(db, tmp_path) as fleet:
        worker = fleet.start(env=env, grace=5)
        wait_until(lambda: all_final(db, ids), 60, "the first jobs to end")
        time.sleep(4 * HEARTBEAT)
        assert is_alive(worker.pid), worker.stderr()
        # The worker still claims and runs jobs.
        ids += submit(db, [chaos_job("work", ledger=str(ledger))])
        wait_until(lambda: all_final(db, ids), 60, "the last job to end")
        assert is_alive(worker.pid), worker.stderr()
        assert stop(worker) == 0, worker.stderr()

    log = worker.stderr()
    assert log.count("plugin 'raising' raised in gigq_job_succeeded") == 4, log
    assert raised.split("(")[0] in log
    assert sorted(lines(tmp_path / "raising")) == sorted(ids)
    assert sorted(lines(tmp_path / "recorder")) == sorted(ids)
    ledger_check(db, ledger, faults=0, submitted=ids, name=f"plugin-{raised}")


def test_a_hanging_hook_holds_neither_leases_nor_later_jobs(tmp_path: Path) -> None:
    db, ledger = tmp_path / "jobs.db", tmp_path / "ledger"
    entered = tmp_path / "hanging"
    env = plugins(tmp_path, hanging=succeeded_hook(entered, "time.sleep(3600)"))
    # The first job's success hook hangs while the second is still held by the worker.
    ids = submit(
        db,
        [chaos_job("work", ledger=str(ledger)), chaos_job("work", ledger=str(ledger), ms=500)],
    )
    first, held = ids
    with Fleet(db, tmp_path) as fleet:
        # Waits for the hook longer than a lease (2 s): only heartbeats keep `held`.
        worker = fleet.start(env={**env, "GIGQ_HOOK_TIMEOUT": "5"}, concurrency=2)
        wait_until(lambda: len(read_ledger(ledger)) == 2, 30, "both jobs to start")
        # Another worker sweeps meanwhile: it would rescue a job whose lease lapsed.
        sweeper = fleet.start("sweeper")
        wait_until(lambda: lines(entered) == [first], 30, "the hook to hang")
        wait_until(lambda: HUNG in worker.stderr(), 30, "the worker to give up on it")
        wait_until(lambda: all_final(db, ids), 30, "both jobs to end")
        assert stop(sweeper) == 0, sweeper.stderr()
        assert [(r["status"], r["worker_id"]) for r in executions(db, held)] == [
            ("completed", worker.worker_id)
        ]
        # The plugin is skipped from now on; the others are still called.
        ids += submit(db, [chaos_job("work", ledger=str(ledger)) for _ in range(2)])
        wait_until(lambda: all_final(db, ids), 30, "the later jobs to end")
        assert is_alive(worker.pid), worker.stderr()
        assert stop(worker) == 0, worker.stderr()

    assert lines(entered) == [first]
    assert worker.stderr().count(HUNG) == 1, worker.stderr()
    assert sorted(lines(tmp_path / "recorder")) == sorted(ids)
    assert "rescued" not in sweeper.stderr(), sweeper.stderr()
    ledger_check(db, ledger, faults=0, submitted=ids, name="plugin-hanging")


def test_sigterm_stops_a_worker_inside_a_hanging_hook_within_the_grace_period(
    tmp_path: Path,
) -> None:
    db, ledger = tmp_path / "jobs.db", tmp_path / "ledger"
    entered = tmp_path / "hanging"
    env = plugins(tmp_path, hanging=succeeded_hook(entered, "time.sleep(3600)"))
    [job_id] = submit(db, [chaos_job("work", ledger=str(ledger))])
    grace = 2.0
    with Fleet(db, tmp_path) as fleet:
        # A hook timeout far beyond the test: only the grace period can end the wait.
        worker = fleet.start(env={**env, "GIGQ_HOOK_TIMEOUT": "600"}, grace=grace)
        wait_until(lambda: lines(entered) == [job_id], 30, "the hook to hang")
        signalled = time.monotonic()
        worker.process.send_signal(signal.SIGTERM)
        code = worker.process.wait(timeout=30)
        took = time.monotonic() - signalled
        assert code == 0, worker.stderr()
    # The grace period, and the moment it takes a worker to leave (without the bound it
    # never leaves).
    assert took < grace + 3.0, (took, worker.stderr())
    assert HUNG in worker.stderr()
    assert (job_row(db, job_id)["status"], job_row(db, job_id)["attempts"]) == ("completed", 1)
    ledger_check(db, ledger, faults=0, submitted=[job_id], name="plugin-hanging-sigterm")


def test_a_plugin_failing_at_import_is_reported_once_and_skipped(tmp_path: Path) -> None:
    db, ledger = tmp_path / "jobs.db", tmp_path / "ledger"
    env = plugins(tmp_path, broken="raise RuntimeError('broken at import')\n")
    ids = submit(db, [chaos_job("work", ledger=str(ledger)) for _ in range(3)])
    with Fleet(db, tmp_path) as fleet:
        worker = fleet.start(env=env, concurrency=2)
        wait_until(lambda: all_final(db, ids), 60, "every job to end")
        assert stop(worker) == 0, worker.stderr()

    log = worker.stderr()
    failed = "plugin 'broken' (gigq-test-broken 1.0) failed to load: RuntimeError("
    assert log.count(failed) == 1, log
    assert "broken at import" in log
    assert sorted(lines(tmp_path / "recorder")) == sorted(ids)
    ledger_check(db, ledger, faults=0, submitted=ids, name="plugin-broken-import")
