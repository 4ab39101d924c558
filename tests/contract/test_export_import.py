"""Contract of the optional storage capabilities `export()` and `import_()` (what
`gigq migrate` copies through): a queue exported from the adapter under test and imported into
a fresh in-memory or SQLite store is the same queue, and behaves the same from then on.

The capability is optional: an adapter without it (a third-party one given with
`--storage-url`) is skipped here with a reason that says so, never failed. Every built-in
adapter and gigq-postgres have it (the plugin also tests SQLite -> PostgreSQL).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from gigq_core.errors import UserError
from gigq_core.ports import Storage
from gigq_core.records import JobStatus, cascade_reason
from gigq_core.transfer import TransferError
from tests.contract._factory import stored
from tests.contract._migration import (
    DRAIN_ORDER,
    KV,
    LOST,
    PAUSED,
    all_jobs,
    assert_same_queue,
    build_scenario,
    drain,
    has_transfer,
    import_into,
    items_of,
)

#: Where the export goes: a fresh store of each built-in adapter.
IMPORT_TARGETS = ("memory", "sqlite")


@pytest.fixture
def exporting(storage: Storage) -> Storage:
    """The storage under test, which must have the optional capability (else skipped)."""
    if not has_transfer(storage):
        pytest.skip(f"{type(storage).__name__} has no export()/import_() (optional capability)")
    return storage


@pytest.fixture(params=IMPORT_TARGETS)
def import_target(request: Any, tmp_path: Path, plugin_manager: Any) -> Iterator[Storage]:
    """A fresh, empty store to import into: in-memory, or a SQLite file."""
    from gigq_core.plugins import open_storage

    if request.param == "memory":
        target = f"memory://import_{uuid.uuid4().hex[:12]}"
    else:
        target = str(tmp_path / "imported.db")
    store = open_storage(target, None, pm=plugin_manager)
    try:
        yield store
    finally:
        store.close()


def test_export_is_json_in_seq_order_with_executions_after_their_job(exporting, clock):
    jobs = build_scenario(exporting, clock)

    items = list(items_of(exporting))

    assert json.loads(json.dumps(items)) == items
    kinds = [item["kind"] for item in items]
    assert set(kinds) == {"job", "execution", "kv", "paused"}
    last_job = max(i for i, kind in enumerate(kinds) if kind in ("job", "execution"))
    assert all(kind in ("job", "execution") for kind in kinds[: last_job + 1])
    job_items = [item for item in items if item["kind"] == "job"]
    assert [item["seq"] for item in job_items] == sorted(item["seq"] for item in job_items)
    assert {item["id"] for item in job_items} == set(jobs.values())
    owner = None
    for item in items[: last_job + 1]:
        if item["kind"] == "job":
            owner = item["id"]
        else:
            assert item["job_id"] == owner
    assert {(i["namespace"], i["key"], i["value"]) for i in items if i["kind"] == "kv"} == set(KV)
    assert [i["queue"] for i in items if i["kind"] == "paused"] == [PAUSED]
    by_name = {item["name"]: item for item in job_items}
    assert by_name["load"]["cancelled_by"] == jobs["transform"]
    assert by_name["report"]["cancelled_by"] == jobs["load"]
    assert by_name["unwanted"]["cancelled_by"] is None
    assert by_name["extract"]["status"] == "completed"
    assert by_name["extract"]["result"] == "3"


def test_import_copies_the_queue_exactly(exporting, import_target, clock):
    build_scenario(exporting, clock)

    counts = import_into(import_target, items_of(exporting), clock.now())

    assert counts == {
        "job": len(all_jobs(exporting)),
        "execution": sum(len(exporting.executions(j.id)) for j in all_jobs(exporting)),
        "kv": len(KV),
        "paused": 1,
        "lost": 0,
    }
    assert_same_queue(exporting, import_target)
    assert import_target.list_workers() == []  # workers belong to the storage they ran on


def test_import_of_the_json_text_copies_the_queue_exactly(exporting, import_target, clock):
    build_scenario(exporting, clock)
    text = "\n".join(json.dumps(item) for item in items_of(exporting))

    import_into(import_target, (json.loads(line) for line in text.splitlines()), clock.now())

    assert_same_queue(exporting, import_target)


def test_imported_queue_drains_what_remains_in_the_same_order(exporting, import_target, clock):
    jobs = build_scenario(exporting, clock)
    import_into(import_target, items_of(exporting), clock.now())
    later = clock.now() + timedelta(hours=2)

    drained = drain(import_target, later)

    assert drained == [jobs[name] for name in DRAIN_ORDER]
    assert drain(exporting, later) == drained
    assert stored(import_target, jobs["paused-work"]).status is JobStatus.PENDING
    for name in ("transform", "load", "report", "unwanted"):
        assert stored(import_target, jobs[name]) == stored(exporting, jobs[name])


def test_requeue_on_the_target_revives_what_the_failure_cancelled(exporting, import_target, clock):
    jobs = build_scenario(exporting, clock)
    import_into(import_target, items_of(exporting), clock.now())

    [transition] = import_target.requeue([jobs["transform"]], clock.now())

    assert [job.id for job in transition.revived] == [jobs["load"], jobs["report"]]
    assert stored(import_target, jobs["load"]).status is JobStatus.PENDING
    drained = drain(import_target, clock.now() + timedelta(hours=2))
    revived = [jobs["transform"], jobs["load"], jobs["report"]]
    assert sorted(drained) == sorted([*revived, *(jobs[name] for name in DRAIN_ORDER)])
    assert [job_id for job_id in drained if job_id in revived] == revived


def test_unique_keys_hold_on_the_target(exporting, import_target, clock, make_job):
    jobs = build_scenario(exporting, clock)
    import_into(import_target, items_of(exporting), clock.now())

    active = make_job(unique_key="only-one")
    done = make_job(unique_key="daily-2030-01-01", unique_scope="success")

    assert import_target.insert([active, done], clock.now()) == [
        jobs["active-unique"],
        jobs["daily"],
    ]


def test_new_jobs_on_the_target_follow_the_imported_ones(exporting, import_target, clock, make_job):
    build_scenario(exporting, clock)
    import_into(import_target, items_of(exporting), clock.now())
    newest = max(job.seq for job in all_jobs(exporting))

    job = make_job()
    import_target.insert([job], clock.now())

    assert stored(import_target, job.id).seq > newest


def test_running_jobs_are_imported_as_their_rescue_leaves_them(
    exporting, import_target, clock, make_job
):
    retried = make_job(name="retried", max_attempts=3)
    final = make_job(name="final", max_attempts=1)
    after = make_job(name="after", dependencies=(final.id,))
    exporting.insert([retried, final, after], clock.now())
    clock.advance(1)
    claimed = {job.id: job for job in exporting.claim("w1", 2, clock.now(), 30.0)}
    assert set(claimed) == {retried.id, final.id}
    clock.advance(60)

    counts = import_into(import_target, items_of(exporting), clock.now())

    assert counts["lost"] == 2
    again = stored(import_target, retried.id)
    assert (again.status, again.attempts, again.error) == (JobStatus.PENDING, 1, "worker lost")
    assert again.token is None and again.lease_expires_at is None
    assert again.run_at == clock.now()
    failed = stored(import_target, final.id)
    assert (failed.status, failed.error) == (JobStatus.FAILED, "worker lost")
    cancelled = stored(import_target, after.id)
    assert cancelled.status is JobStatus.CANCELLED
    assert cancelled.error == cascade_reason(final.id, final.name, "failed")
    for job_id in (retried.id, final.id):
        [execution] = import_target.executions(job_id)
        assert (execution.status, execution.error) == ("lost", LOST)
        assert execution.token == claimed[job_id].token
    # The source is left as it was; the rescue happened in the copy only.
    assert stored(exporting, retried.id).status is JobStatus.RUNNING
    [transition] = import_target.requeue([final.id], clock.now())
    assert [job.id for job in transition.revived] == [after.id]
    assert drain(import_target, clock.now()) == [retried.id, final.id, after.id]


def test_import_into_a_queue_with_jobs_is_refused_and_changes_nothing(
    exporting, import_target, clock, make_job
):
    build_scenario(exporting, clock)
    existing = make_job(name="already here")
    import_target.insert([existing], clock.now())

    with pytest.raises(TransferError, match="already holds 1 job") as caught:
        import_into(import_target, items_of(exporting), clock.now())

    assert isinstance(caught.value, UserError)
    assert [job.id for job in all_jobs(import_target)] == [existing.id]
    assert import_target.paused_queues() == frozenset()
    assert import_target.kv_items("cron") == {}


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        ({"kind": "job", "id": "x"}, "missing field"),
        ({"kind": "worker", "id": "x"}, "unknown kind"),
        ({"kind": "kv", "namespace": "a", "key": 1, "value": "v"}, "'key' must be a string"),
        (
            {
                "kind": "execution",
                "id": "e",
                "job_id": "nobody",
                "attempt": 1,
                "worker_id": "w",
                "token": "t",
                "status": "completed",
                "started_at": "2030-01-01T00:00:00+00:00",
                "completed_at": None,
                "result": None,
                "error": None,
            },
            "not exported before it",
        ),
    ],
)
def test_bad_items_are_refused_and_nothing_is_stored(
    exporting, import_target, clock, broken, message
):
    build_scenario(exporting, clock)
    items = list(items_of(exporting))
    items.insert(len(items) // 2, broken)

    with pytest.raises(TransferError, match=message):
        import_into(import_target, items, clock.now())

    assert all_jobs(import_target) == []
    assert import_target.kv_items("cron") == {}


def test_export_of_an_empty_store_imports_as_nothing(exporting, import_target, clock):
    counts = import_into(import_target, items_of(exporting), clock.now())

    assert counts == {"job": 0, "execution": 0, "kv": 0, "paused": 0, "lost": 0}
    assert all_jobs(import_target) == []
