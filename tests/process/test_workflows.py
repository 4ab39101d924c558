"""Workflows drained by four real worker processes: diamond and fan-in DAGs run in
dependency order, parent results reach the fan-in job, a failure in the middle cancels
exactly its downstream jobs, and requeueing it (once fixed) revives exactly those.

Each job (`tests.dag_jobs:step`) appends "<id> <start> <end> <ok|fail>" to a ledger, so the
order is checked twice: against the stored `completed_at` and against the ledger times.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import attrs
import pytest

from gigq import JobQueue
from gigq_core import Job, Workflow, make_plugin_manager
from tests.process._harness import Fleet, wait_until

pytestmark = [pytest.mark.process, pytest.mark.timeout(150)]

WORKERS = 4
#: How long each job sleeps, so that independent jobs overlap on four workers.
MS = 150
#: Seconds a whole workflow may take on a loaded 2-core machine.
BOUND = 60.0
#: Float timestamps round-trip through SQLite; allow their rounding, nothing more.
EPSILON = 1e-5


@attrs.frozen
class Run:
    """One execution, from the ledger."""

    job_id: str
    start: float
    end: float
    ok: bool


def read_runs(ledger: Path) -> list[Run]:
    """Every execution the ledger recorded, in order."""
    if not ledger.exists():
        return []
    runs = []
    for line in ledger.read_text().splitlines():
        job_id, start, end, ok = line.split(" ")
        runs.append(Run(job_id, float(start), float(end), ok == "ok"))
    return runs


def timestamp(value: str) -> float:
    """An ISO 8601 time of get_status as Unix seconds."""
    return datetime.fromisoformat(value).timestamp()


@pytest.fixture
def queue(tmp_path: Path) -> Iterator[JobQueue]:
    """The test's SQLite queue."""
    with JobQueue(
        str(tmp_path / "jobs.db"), plugin_manager=make_plugin_manager(load_entrypoints=False)
    ) as jobs:
        yield jobs


@pytest.fixture
def fleet(tmp_path: Path, queue: JobQueue) -> Iterator[Fleet]:
    """Four workers, registered (ready to claim) before the test submits anything; stopped
    (SIGTERM, then SIGKILL) by pid when the test ends."""
    with Fleet(tmp_path / "jobs.db", tmp_path) as workers:
        for _ in range(WORKERS):
            workers.start(polling_interval=0.2, log_level="WARNING")
        wait_until(lambda: len(queue.workers()) == WORKERS, 30, "four workers to register")
        yield workers
    codes = [w.process.returncode for w in workers.workers]
    assert codes == [0] * WORKERS, f"workers exited {codes}"


def job(name: str, ledger: Path, value: int, **params: Any) -> Job:
    """A `step` job that sleeps MS ms and records itself in the ledger."""
    return Job(
        name,
        "tests.dag_jobs:step",
        params={"value": value, "ms": MS, "ledger": str(ledger), **params},
        max_attempts=1,
    )


def finish(queue: JobQueue, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Wait (bounded) until every job is final; returns their get_status by id."""
    statuses = queue.wait(list(ids), timeout=BOUND)
    assert all(s in ("completed", "failed", "cancelled", "timeout") for s in statuses.values()), (
        f"not finished within {BOUND:g} s: {statuses}"
    )
    return {job_id: queue.get_status(job_id) for job_id in ids}


def check_order(infos: dict[str, dict[str, Any]], runs: list[Run]) -> None:
    """Every job that ran started after each of its dependencies completed: after the
    stored completed_at (and the stored started_at too) and after its ledger end time."""
    last = {run.job_id: run for run in runs}
    for info in infos.values():
        if info["started_at"] is None:
            continue
        run = last[info["id"]]
        for dep in info["dependencies"]:
            parent = infos[dep]
            assert parent["status"] == "completed", (info["name"], parent["name"])
            done = timestamp(parent["completed_at"])
            assert run.start + EPSILON >= done, (info["name"], "started before", parent["name"])
            assert timestamp(info["started_at"]) + EPSILON >= done
            assert run.start >= last[dep].end, (info["name"], parent["name"])


def test_diamond_runs_in_dependency_order(tmp_path: Path, queue: JobQueue, fleet: Fleet) -> None:
    ledger = tmp_path / "ledger"
    flow = Workflow("diamond")
    a = flow.add_job(job("A", ledger, 1))
    b = flow.add_job(job("B", ledger, 10), depends_on=a)
    c = flow.add_job(job("C", ledger, 100), depends_on=a)
    flow.add_job(job("D", ledger, 1000), depends_on=[b, c])
    ids = flow.submit_all(queue)
    infos = finish(queue, ids)
    assert {i["name"]: i["status"] for i in infos.values()} == dict.fromkeys("ABCD", "completed")
    runs = read_runs(ledger)
    assert sorted(r.job_id for r in runs) == sorted(ids), "each job ran exactly once"
    check_order(infos, runs)
    results = {i["name"]: i["result"] for i in infos.values()}
    assert results == {"A": 1, "B": 11, "C": 101, "D": 1112}
    assert queue.resolve_workflow("diamond").counts == {"completed": 4}


def test_fan_in_gets_every_parent_result(tmp_path: Path, queue: JobQueue, fleet: Fleet) -> None:
    ledger = tmp_path / "ledger"
    flow = Workflow("fan-in")
    parents = [flow.add_job(job(f"p{n}", ledger, n)) for n in range(1, 11)]
    total = flow.add_job(job("sum", ledger, 0), depends_on=parents)
    ids = flow.submit_all(queue)
    infos = finish(queue, ids)
    assert [infos[i]["status"] for i in ids] == ["completed"] * 11
    assert infos[total.id]["result"] == sum(range(1, 11))
    runs = read_runs(ledger)
    assert sorted(r.job_id for r in runs) == sorted(ids), "each job ran exactly once"
    check_order(infos, runs)
    # The parents ran in parallel on several workers, not one after another.
    assert len({infos[p.id]["worker_id"] for p in parents}) >= 2
    by_id = {r.job_id: r for r in runs}
    spans = sorted((by_id[p.id].start, by_id[p.id].end) for p in parents)
    assert any(later[0] < earlier[1] for earlier, later in itertools.pairwise(spans))


REASON = re.compile(r"dependency '(?P<name>[^']*)' \((?P<id>[^)]+)\) ended (?P<status>\w+)")


def test_failure_in_the_middle_cancels_downstream_and_requeue_revives_it(
    tmp_path: Path, queue: JobQueue, fleet: Fleet
) -> None:
    ledger, marker = tmp_path / "ledger", tmp_path / "fixed"
    flow = Workflow("middle")
    #   A -> B -> D -> E      B fails (until fixed); D, E are downstream of it.
    #   A -> C -> D           C, F, G and H are not.
    #        C -> F
    #   G -> H
    a = flow.add_job(job("A", ledger, 1))
    b = flow.add_job(job("B", ledger, 2, fail_unless=str(marker)), depends_on=a)
    c = flow.add_job(job("C", ledger, 3), depends_on=a)
    d = flow.add_job(job("D", ledger, 4), depends_on=[b, c])
    e = flow.add_job(job("E", ledger, 5), depends_on=d)
    flow.add_job(job("F", ledger, 6), depends_on=c)
    g = flow.add_job(job("G", ledger, 7))
    flow.add_job(job("H", ledger, 8), depends_on=g)
    ids = flow.submit_all(queue)
    names = dict(zip(ids, "ABCDEFGH", strict=True))
    by_name = dict(zip("ABCDEFGH", ids, strict=True))

    infos = finish(queue, ids)
    statuses = {names[i]: info["status"] for i, info in infos.items()}
    assert statuses == {
        **dict.fromkeys("ACFGH", "completed"),
        "B": "failed",
        **dict.fromkeys("DE", "cancelled"),
    }
    assert infos[b.id]["attempts"] == 1
    reasons = {names[i]: REASON.fullmatch(infos[i]["error"]) for i in (d.id, e.id)}
    assert reasons["D"] is not None and reasons["E"] is not None, infos
    assert (reasons["D"]["id"], reasons["D"]["name"], reasons["D"]["status"]) == (
        b.id,
        "B",
        "failed",
    )
    assert (reasons["E"]["id"], reasons["E"]["status"]) == (d.id, "cancelled")
    runs = read_runs(ledger)
    assert sorted(names[r.job_id] for r in runs) == list("ABCFGH"), "D and E never ran"
    check_order(infos, runs)
    assert queue.resolve_workflow("middle").counts == {
        "completed": 5,
        "failed": 1,
        "cancelled": 2,
    }

    marker.touch()
    assert queue.requeue_job(b.id) is True
    after = {names[i]: queue.get_status(i) for i in ids}
    for name in "BDE":
        assert after[name]["status"] in ("pending", "running", "completed"), after[name]
    for name in "ACFGH":
        assert after[name] == infos[by_name[name]], f"{name} changed"

    final = finish(queue, ids)
    assert {names[i]: info["status"] for i, info in final.items()} == dict.fromkeys(
        "ABCDEFGH", "completed"
    )
    results = {names[i]: info["result"] for i, info in final.items()}
    assert results["B"] == 1 + 2 and results["C"] == 1 + 3
    assert results["D"] == 4 + 3 + 4 and results["E"] == 5 + 11
    runs = read_runs(ledger)
    assert sorted(names[r.job_id] for r in runs) == sorted("ABBCDEFGH"), "only B, D, E ran again"
    check_order(final, runs)
    for name in "ACFGH":
        assert final[by_name[name]] == infos[by_name[name]], f"{name} ran or changed again"
    assert queue.resolve_workflow("middle").counts == {"completed": 8}
