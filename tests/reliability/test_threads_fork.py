"""Threads and fork (docs/guarantees.md): threads share one JobQueue; a child
process after fork() reopens its connection, its writes land, and the parent's connection
keeps working, even when the fork happens while other threads are writing."""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from gigq import JobQueue
from gigq_core import Job, Worker, make_plugin_manager

pytestmark = pytest.mark.timeout(120)

THREADS = 8
PER_THREAD = 40
CHILDREN = 4
PER_CHILD = 15


def quick_check(db: Path) -> str:
    """PRAGMA quick_check through a plain connection."""
    conn = sqlite3.connect(db)
    try:
        return str(conn.execute("PRAGMA quick_check").fetchone()[0])
    finally:
        conn.close()


def wait_child(pid: int, timeout: float) -> int:
    """The child's exit code; SIGKILL it (by its pid) if it takes longer than `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    raise AssertionError(f"child {pid} did not finish within {timeout} s")


def test_threads_share_one_queue_and_forked_children_reopen(tmp_path: Path) -> None:
    started = time.monotonic()
    db = tmp_path / "jobs.db"
    pm = make_plugin_manager(load_entrypoints=False)
    queue = JobQueue(str(db), plugin_manager=pm)
    submitted: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    go = threading.Event()

    def submitter(n: int) -> None:
        go.wait()
        try:
            for k in range(PER_THREAD):
                job_id = queue.submit(Job(f"t{n}-{k}", "tests.jobs:add", params={"a": n, "b": k}))
                status = queue.get_status(job_id)
                assert status["exists"] and status["params"] == {"a": n, "b": k}
                if k % 10 == 0:
                    queue.list_jobs(limit=5)
                    queue.stats()
                with lock:
                    submitted.append(job_id)
        except BaseException as err:  # reported by the main thread
            errors.append(err)

    def runner() -> None:
        """A worker thread on the same queue, running jobs inline as they come."""
        go.wait()
        worker = Worker(queue, executor="inline", plugin_manager=pm)
        try:
            while not stop.is_set():
                if not worker.process_one():
                    time.sleep(0.005)
        except BaseException as err:
            errors.append(err)
        finally:
            worker.close()

    stop = threading.Event()
    threads = [threading.Thread(target=submitter, args=(n,)) for n in range(THREADS)]
    threads.append(threading.Thread(target=runner))
    for thread in threads:
        thread.start()
    go.set()
    # Fork while the threads write: the fork hook waits for the transaction in progress,
    # and the child must reopen (a connection never crosses fork()).
    children, child_ids = [], []
    for c in range(CHILDREN):
        time.sleep(0.05)
        ids = [f"00000000-0000-4000-8000-{c:04d}{k:08d}" for k in range(PER_CHILD)]
        child_ids += ids
        pid = os.fork()
        if pid == 0:  # the child: report through the exit code, never return into pytest
            code = 1
            try:
                for job_id in ids:
                    queue.submit(Job("child", "tests.jobs:noop", id=job_id))
                code = 0 if queue.stats()["total"] >= PER_CHILD else 2
            finally:
                os._exit(code)
        children.append(pid)
    codes = [wait_child(pid, 60) for pid in children]
    for thread in threads[:-1]:
        thread.join(timeout=60)
    stop.set()
    threads[-1].join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    assert not errors, errors[:3]
    assert codes == [0] * CHILDREN, codes
    # The parent's connection keeps working and sees every commit, its own and the children's.
    queue.submit(Job("after", "tests.jobs:noop"))
    stats = queue.stats()
    queue.close()
    total = THREADS * PER_THREAD + CHILDREN * PER_CHILD + 1
    assert stats["total"] == total, stats
    assert len(set(submitted)) == THREADS * PER_THREAD
    conn = sqlite3.connect(db)
    stored = {job_id for (job_id,) in conn.execute("SELECT id FROM jobs")}
    conn.close()
    assert set(submitted) | set(child_ids) <= stored
    assert quick_check(db) == "ok"
    print(
        f"[threads-fork] threads={THREADS} submits={len(submitted)} children={CHILDREN} "
        f"child_submits={len(child_ids)} completed={stats.get('completed', 0)} "
        f"total={stats['total']} time={time.monotonic() - started:.1f}s"
    )
