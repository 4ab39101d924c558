"""Random workflows (DAGs) with random failures, drained by an inline worker, end with every
job in the state a plain model predicts; requeueing a failed job (now fixed) revives exactly
the jobs the model says, and the workflow then ends as the model predicts again.

Runs on memory and on SQLite. Jobs are `tests.dag_jobs:step`: each returns its value plus
the sum of its parents' results, and a failing job raises until its marker file exists.
"""

from __future__ import annotations

import collections
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gigq import JobQueue
from gigq_core import Job, Worker, Workflow
from gigq_core.plugins import make_plugin_manager

# One plugin manager for every example: building one scans entry points.
PM = make_plugin_manager(load_entrypoints=False)

MAX_JOBS = 12
REASON = re.compile(r"dependency '(?P<name>[^']*)' \((?P<id>[^)]+)\) ended (?P<status>\w+)")


@dataclass(frozen=True)
class Dag:
    """A random DAG: job i depends on the jobs in `deps[i]` (all earlier than i)."""

    deps: tuple[tuple[int, ...], ...]
    #: Jobs that raise until their marker exists.
    failing: frozenset[int]
    #: Attempts each job may take (a failing job fails every one of them).
    attempts: tuple[int, ...]

    @property
    def size(self) -> int:
        """Number of jobs."""
        return len(self.deps)


@st.composite
def dags(draw: st.DrawFn) -> Dag:
    """A DAG of 1 to MAX_JOBS jobs, edges only from earlier to later jobs."""
    size = draw(st.integers(min_value=1, max_value=MAX_JOBS))
    deps = tuple(
        tuple(
            sorted(draw(st.sets(st.integers(min_value=0, max_value=i - 1), max_size=3)))
            if i
            else ()
        )
        for i in range(size)
    )
    failing = draw(st.frozensets(st.integers(min_value=0, max_value=size - 1), max_size=size))
    attempts = tuple(draw(st.sampled_from([1, 1, 2])) for _ in range(size))
    return Dag(deps=deps, failing=failing, attempts=attempts)


def predict(dag: Dag, failing: set[int]) -> list[str]:
    """The final state of each job when the jobs in `failing` fail for good.

    Completed if it and all its ancestors succeed; failed if it fails and all its
    dependencies completed; cancelled otherwise.
    """
    states: list[str] = []
    for i, deps in enumerate(dag.deps):
        if any(states[d] != "completed" for d in deps):
            states.append("cancelled")
        else:
            states.append("failed" if i in failing else "completed")
    return states


def expected_results(dag: Dag, states: list[str]) -> dict[int, int]:
    """The result of each completed job: its value (i + 1) plus its parents' results."""
    results: dict[int, int] = {}
    for i, deps in enumerate(dag.deps):
        if states[i] == "completed":
            results[i] = i + 1 + sum(results[d] for d in deps)
    return results


def predict_revived(dag: Dag, states: list[str], requeued: int) -> set[int]:
    """The cancelled jobs that requeueing `requeued` revives: each cancelled job all of
    whose dependencies are completed, the requeued job or revived, and one of them is."""
    live = {requeued}
    revived: set[int] = set()
    for i, deps in enumerate(dag.deps):
        if states[i] != "cancelled" or not deps:
            continue
        if all(states[d] == "completed" or d in live for d in deps) and live & set(deps):
            live.add(i)
            revived.add(i)
    return revived


def same_but_reason(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """True when two get_status dicts differ at most in `error` and `updated_at`."""
    ignored = ("error", "updated_at")
    return {k: v for k, v in old.items() if k not in ignored} == {
        k: v for k, v in new.items() if k not in ignored
    }


class Run:
    """One example: the queue, the submitted jobs (by index), and their markers."""

    def __init__(self, target: str, folder: Path, dag: Dag) -> None:
        self.dag = dag
        self.folder = folder
        self.queue = JobQueue(target, plugin_manager=PM)
        self.worker = Worker(self.queue, executor="inline", worker_id="inline")
        flow = Workflow(f"dag-{uuid.uuid4().hex[:6]}")
        jobs: list[Job] = []
        for i, deps in enumerate(dag.deps):
            marker = str(folder / f"marker-{i}") if i in dag.failing else None
            job = Job(
                f"j{i}",
                "tests.dag_jobs:step",
                params={"value": i + 1, "fail_unless": marker},
                max_attempts=dag.attempts[i],
                retry_delay=0,
            )
            jobs.append(flow.add_job(job, depends_on=[jobs[d] for d in deps]))
        self.ids = flow.submit_all(self.queue)
        assert self.ids == [job.id for job in jobs]
        self.flow = flow

    def drain(self) -> int:
        """Run ready jobs inline until none is left; returns how many ran."""
        ran = 0
        while self.worker.process_one():
            ran += 1
            assert ran <= 3 * MAX_JOBS, "the worker keeps claiming jobs"
        return ran

    def statuses(self) -> list[dict[str, Any]]:
        """get_status of every job, by index."""
        return [self.queue.get_status(job_id) for job_id in self.ids]

    def check(self, states: list[str]) -> None:
        """Every job is in its predicted state, with its predicted result; a cancelled job
        names a dependency of it that ended badly, as that dependency is now."""
        infos = self.statuses()
        assert [info["status"] for info in infos] == states
        index = {job_id: i for i, job_id in enumerate(self.ids)}
        results = expected_results(self.dag, states)
        for i, info in enumerate(infos):
            if states[i] == "completed":
                assert info["result"] == results[i], (i, info)
            elif states[i] == "cancelled":
                match = REASON.fullmatch(info["error"] or "")
                assert match is not None, (i, info["error"])
                upstream = index[match["id"]]
                assert upstream in self.dag.deps[i], (i, info["error"])
                assert match["name"] == f"j{upstream}"
                assert match["status"] == states[upstream] != "completed"
            else:
                assert info["attempts"] == self.dag.attempts[i]
        flow = self.queue.resolve_workflow(self.flow.name)
        counts = {s: states.count(s) for s in set(states)}
        assert flow.id == self.flow.id and flow.counts == counts

    def close(self) -> None:
        """Stop the worker's heartbeat thread and close the storage."""
        self.worker.close()
        self.queue.close()


#: Adapter -> counts over every DAG run, for the one-line summary.
DAG_TALLY: dict[str, collections.Counter[str]] = {}


@pytest.fixture(params=["memory", "sqlite"])
def adapter(request: pytest.FixtureRequest) -> Iterator[str]:
    """The adapter of the run; prints its one-line summary after the runs (each ended with
    every job's state checked against the model: `run.check`)."""
    name = str(request.param)
    yield name
    tally = DAG_TALLY.pop(name, collections.Counter())
    states = ",".join(f"{s}={tally[s]}" for s in ("completed", "failed", "cancelled") if tally[s])
    # Each job's state was compared with the model's; results and reasons too where set.
    checked = tally["jobs"] + tally["completed"] + tally["cancelled"]
    print(f"[dag {name}] dags={tally['dags']} jobs={tally['jobs']} {states} compared={checked}")


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(dag=dags(), data=st.data())
def test_random_dag_ends_as_the_model_predicts(adapter: str, dag: Dag, data: st.DataObject) -> None:
    folder = Path(tempfile.mkdtemp(prefix="gigq-dag-"))
    if adapter == "memory":
        target = f"memory://dag_{uuid.uuid4().hex}"
    else:
        target = f"sqlite:///{folder / 'jobs.db'}?durability=normal"
    run = Run(target, folder, dag)
    try:
        failing = set(dag.failing)
        states = predict(dag, failing)
        ran = run.drain()
        assert ran == sum(
            dag.attempts[i] if s == "failed" else 1
            for i, s in enumerate(states)
            if s != "cancelled"
        )
        run.check(states)

        # Fix failed jobs one at a time and requeue them.
        for _ in range(data.draw(st.integers(min_value=0, max_value=2), label="requeues")):
            failed = [i for i, s in enumerate(states) if s == "failed"]
            if not failed:
                break
            fixed = data.draw(st.sampled_from(failed), label="fixed job")
            (folder / f"marker-{fixed}").touch()
            before = run.statuses()
            assert run.queue.requeue_job(run.ids[fixed]) is True
            revived = predict_revived(dag, states, fixed)
            after = run.statuses()
            for i, (old, new) in enumerate(zip(before, after, strict=True)):
                if i == fixed or i in revived:
                    assert new["status"] == "pending", (i, new)
                    assert new["attempts"] == 0 and new["error"] is None
                elif old["status"] == "cancelled" and new["status"] == "cancelled":
                    # Cancelled by the fixed job, directly or through a revived job, but
                    # still waiting for another broken dependency: stays cancelled, its
                    # reason now naming that one (checked below, after the drain).
                    assert run.ids[fixed] not in new["error"], (i, new["error"])
                    assert same_but_reason(old, new), i
                else:
                    assert new == old, i
            failing.discard(fixed)
            states = predict(dag, failing)
            run.drain()
            run.check(states)
        tally = DAG_TALLY.setdefault(adapter, collections.Counter())
        tally["dags"] += 1
        tally["jobs"] += len(states)
        for state in states:
            tally[state] += 1
    finally:
        run.close()
        shutil.rmtree(folder, ignore_errors=True)
