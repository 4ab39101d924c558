"""`max_child_memory` measures a pool child's memory with /proc where it exists, and with
the peak `getrusage` reports where it does not (macOS), never silently not at all."""

from __future__ import annotations

import builtins
import resource
import sys

import pytest

from gigq import JobQueue
from gigq_core import Job, Worker, pool
from tests.process import chaos_jobs


@pytest.fixture
def no_proc(monkeypatch):
    """This process (and the children it forks) as on a system without /proc."""

    def without_proc(path, *args, **kwargs):
        if str(path).startswith("/proc/"):
            raise FileNotFoundError(2, "No such file or directory", str(path))
        return builtins.open(path, *args, **kwargs)

    monkeypatch.setattr(pool, "open", without_proc, raising=False)


def test_without_proc_the_peak_from_getrusage_counts(no_proc):
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    expected = peak / 2**20 if sys.platform == "darwin" else peak / 2**10
    measured = pool._rss_mib()
    assert measured > 1  # a Python process holds more than 1 MiB: the limit can trip
    assert measured == pytest.approx(expected, rel=0.5)


@pytest.mark.timeout(60)
def test_without_proc_a_child_past_max_child_memory_is_still_recycled(no_proc, pm, tmp_path):
    ledger = str(tmp_path / "ledger")
    with JobQueue(str(tmp_path / "jobs.db"), plugin_manager=pm) as queue:
        ids = [queue.submit(Job(f"w{i}", chaos_jobs.work, {"ledger": ledger})) for i in range(3)]
        worker = Worker(queue, executor="process", max_child_memory=1, polling_interval=0.1)
        worker.start(burst=True)
        pids = [queue.get_result(i)["pid"] for i in ids]
    assert len(set(pids)) == 3, pids  # each child passed 1 MiB and retired after its job
