"""A queue worth migrating, built through the storage port, and the checks that a copy of it
is exact; shared by the export/import contract tests and the PostgreSQL plugin's migration
tests.

The scenario holds a workflow whose middle step failed for good (its dependents
cascade-cancelled, transitively), a completed job, a job waiting for a retry, a
user-cancelled job, a job blocked on one pending and one completed dependency, a job
scheduled an hour ahead, unique-key jobs (one deduplicated into a completed holder), a job in
a paused queue, key-value entries and a registered worker (which is not migrated).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import attrs

from gigq_core.ports import Storage
from gigq_core.records import ErrorInfo, JobFilter, JobRecord, JobStatus, Outcome, WorkerInfo
from gigq_core.testing import FakeClock
from tests.contract._factory import BOOM, LEASE, complete, end_badly, job_record

#: Names of the scenario's jobs that are ready (or become ready) once its clock passes the
#: scheduled job's start, in the order one worker claims them: priority, then submit order,
#: "join" once "side" completed; "paused-work" stays in its paused queue.
DRAIN_ORDER = ("urgent", "flaky", "side", "join", "later", "active-unique")

#: Key-value entries of the scenario: (namespace, key, value).
KV = (("cron", "nightly", '{"last": "2030-01-01T00:00:00+00:00"}'), ("plugin", "k", "v"))

#: The paused queue (its job must stay pending on the target).
PAUSED = "reports"


def build_scenario(storage: Storage, clock: FakeClock) -> dict[str, str]:
    """Fill an empty storage with the scenario; returns job name -> id."""
    jobs: dict[str, str] = {}

    def add(name: str, **fields: Any) -> JobRecord:
        job = job_record(clock.now(), name=name, **fields)
        jobs[name] = job.id
        return job

    flow = {"workflow_id": "wf-etl", "workflow_name": "etl"}
    extract = add("extract", function="tests.jobs:add", params='{"a": 1, "b": 2}', **flow)
    storage.insert([extract], clock.now())
    clock.advance(1)
    complete(storage, clock.now(), extract.id, result="3")

    clock.advance(1)
    transform = add("transform", dependencies=(extract.id,), max_attempts=1, **flow)
    load = add("load", dependencies=(transform.id,), **flow)
    report = add("report", dependencies=(load.id,), description="the last step", **flow)
    storage.insert([transform, load, report], clock.now())
    clock.advance(1)
    end_badly(storage, clock.now(), transform.id, "failed")

    clock.advance(1)
    flaky = add("flaky", retry="fixed", retry_params='{"delay": 5}', timeout=None)
    storage.insert([flaky], clock.now())
    clock.advance(1)
    token = storage.claim("w1", 1, clock.now(), LEASE)[0].token
    assert token
    retry_at = clock.now() + timedelta(seconds=5)
    [retried] = storage.finish(
        [Outcome(job_id=flaky.id, token=token, status="failed", error=BOOM, retry_at=retry_at)],
        clock.now(),
    )
    assert retried is not None and retried.job.status is JobStatus.PENDING

    clock.advance(1)
    daily = add("daily", unique_key="daily-2030-01-01", unique_scope="success")
    storage.insert([daily], clock.now())
    complete(storage, clock.now(), daily.id, result='{"rows": 12}')
    again = job_record(
        clock.now(), name="daily", unique_key="daily-2030-01-01", unique_scope="success"
    )
    assert storage.insert([again], clock.now()) == [daily.id]

    clock.advance(1)
    unwanted = add("unwanted")
    storage.insert([unwanted], clock.now())
    storage.cancel([unwanted.id], clock.now(), "cancelled: not needed")

    clock.advance(1)
    side = add(
        "side", function="tests.jobs:echo", params='{"x": [1, 2]}', pass_parent_results=False
    )
    join = add(
        "join",
        function="tests.jobs:echo",
        dependencies=(extract.id, side.id),
        pass_parent_results=True,
    )
    later = add("later", run_at=clock.now() + timedelta(hours=1))
    active = add("active-unique", unique_key="only-one")
    paused = add("paused-work", queue=PAUSED)
    urgent = add("urgent", priority=10)
    storage.insert([side, join, later, active, paused, urgent], clock.now())
    storage.set_queue_paused(PAUSED, True)
    for namespace, key, value in KV:
        storage.kv_set(namespace, key, value)
    storage.register_worker(
        WorkerInfo(
            id="old-worker",
            host="elsewhere",
            pid=1,
            started_at=clock.now(),
            last_heartbeat=clock.now(),
            stopped_at=clock.now(),
        )
    )
    clock.advance(1)
    return jobs


def all_jobs(storage: Storage) -> list[JobRecord]:
    """Every job, in submit order."""
    return storage.list_jobs(JobFilter(), limit=100_000, order="oldest")


def assert_same_queue(source: Storage, target: Storage) -> None:
    """Every job record, execution record, key-value entry and paused queue of `source` is
    in `target`, equal, and nothing else is."""
    jobs = all_jobs(source)
    copied = all_jobs(target)
    assert [job.id for job in copied] == [job.id for job in jobs]
    for job, copy in zip(jobs, copied, strict=True):
        assert copy == job, differences(job, copy)
        assert target.executions(job.id) == source.executions(job.id), job.name
    for namespace in {namespace for namespace, _, _ in KV}:
        assert target.kv_items(namespace) == source.kv_items(namespace)
    assert target.paused_queues() == source.paused_queues()
    assert target.count(JobFilter()) == source.count(JobFilter())


def differences(a: Any, b: Any) -> dict[str, tuple[Any, Any]]:
    """The fields in which two attrs records differ (for assertion messages)."""
    return {
        field.name: (getattr(a, field.name), getattr(b, field.name))
        for field in attrs.fields(type(a))
        if getattr(a, field.name) != getattr(b, field.name)
    }


def drain(storage: Storage, now: datetime) -> list[str]:
    """Claim and complete, one at a time, every job ready at `now`; returns their ids in
    claim order."""
    done: list[str] = []
    while claimed := storage.claim("drainer", 1, now, LEASE):
        [job] = claimed
        assert job.token
        [transition] = storage.finish(
            [Outcome(job_id=job.id, token=job.token, status="completed", result="null")], now
        )
        assert transition is not None
        done.append(job.id)
    return done


def items_of(storage: Storage) -> Iterator[dict[str, Any]]:
    """The storage's export stream (the capability is optional: callers check for it)."""
    export = getattr(storage, "export")  # noqa: B009  (optional, not on the protocol)
    items: Iterator[dict[str, Any]] = export()
    return items


def import_into(storage: Storage, items: Any, now: datetime | None = None) -> dict[str, int]:
    """`storage.import_(items, now)`."""
    counts: dict[str, int] = getattr(storage, "import_")(items, now)  # noqa: B009
    return counts


def has_transfer(storage: Storage) -> bool:
    """True when the adapter has the optional export() / import_() capability."""
    return callable(getattr(storage, "export", None)) and callable(
        getattr(storage, "import_", None)
    )


#: The error of the attempt a lost worker was running.
LOST = ErrorInfo(type="WorkerLost", message="worker lost")
