"""Contract of `Storage.insert`: ids, stored fields, dependencies and unique keys."""

from __future__ import annotations

import attrs
import pytest

from gigq_core.errors import DependencyCycleError, InvalidJobError, UnknownDependencyError
from gigq_core.records import JobFilter, JobStatus
from tests.contract._factory import complete, end_badly, ids, seconds, stored


def all_jobs(storage):
    return storage.list_jobs(JobFilter(), limit=1000, order="oldest")


def test_returns_ids_in_the_order_given(storage, clock, make_job):
    jobs = [make_job() for _ in range(5)]

    assert storage.insert(jobs, clock.now()) == ids(jobs)
    assert ids(all_jobs(storage)) == ids(jobs)


def test_insert_of_nothing_stores_nothing(storage, clock):
    assert storage.insert([], clock.now()) == []
    assert all_jobs(storage) == []


def test_takes_id_dependencies_unique_key_and_fields_as_given(storage, clock, make_job):
    now = clock.now()
    parent = make_job()
    job = make_job(
        name="fetch day",
        function="pipeline.tasks:fetch",
        params='{"day": "2024-01-01", "n": [1, 2]}',
        queue="io",
        priority=7,
        max_attempts=5,
        timeout=12.5,
        retry="fixed",
        retry_params='{"delay": 3}',
        description="fetch one day",
        dependencies=(parent.id,),
        pass_parent_results=True,
        unique_key="fetch:2024-01-01",
        unique_scope="success",
        workflow_id="wf-1",
        workflow_name="daily",
        run_at=now + seconds(90.123456),
    )
    bare = make_job(timeout=None, pass_parent_results=False)
    storage.insert([parent, job, bare], now)

    got = stored(storage, job.id)
    for field in (
        "id",
        "name",
        "function",
        "params",
        "queue",
        "priority",
        "max_attempts",
        "timeout",
        "retry",
        "retry_params",
        "description",
        "dependencies",
        "pass_parent_results",
        "unique_key",
        "unique_scope",
        "workflow_id",
        "workflow_name",
        "run_at",
    ):
        assert getattr(got, field) == getattr(job, field), field
    got_bare = stored(storage, bare.id)
    assert got_bare.timeout is None
    assert got_bare.pass_parent_results is False
    assert got_bare.unique_key is None
    assert got_bare.dependencies == ()


def test_sets_status_attempts_seq_and_timestamps(storage, clock, make_job):
    submitted = clock.now()
    clock.advance(60)
    now = clock.now()
    jobs = [
        make_job(created_at=submitted, updated_at=submitted, seq=999, attempts=2) for _ in range(3)
    ]
    storage.insert(jobs, now)
    later = make_job()
    storage.insert([later], now)

    records = [stored(storage, job_id) for job_id in [*ids(jobs), later.id]]
    for record in records:
        assert record.status == JobStatus.PENDING
        assert record.attempts == 0
        assert record.created_at == now
        assert record.updated_at == now
    seqs = [record.seq for record in records]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == len(seqs)


def test_ignores_a_given_status(storage, clock, make_job):
    job = make_job(status=JobStatus.COMPLETED)
    storage.insert([job], clock.now())

    assert stored(storage, job.id).status == JobStatus.PENDING


def test_dependency_on_a_stored_job(storage, clock, make_job):
    parent = make_job()
    storage.insert([parent], clock.now())
    child = make_job(dependencies=(parent.id,))

    assert storage.insert([child], clock.now()) == [child.id]
    got = stored(storage, child.id)
    assert got.dependencies == (parent.id,)
    assert got.status == JobStatus.PENDING


def test_dependencies_within_the_same_call_keep_their_order(storage, clock, make_job):
    a = make_job()
    b = make_job(dependencies=(a.id,))
    c = make_job(dependencies=(b.id, a.id))

    assert storage.insert([a, b, c], clock.now()) == [a.id, b.id, c.id]
    assert stored(storage, b.id).dependencies == (a.id,)
    assert stored(storage, c.id).dependencies == (b.id, a.id)


def test_dependency_on_a_later_job_of_the_same_call(storage, clock, make_job):
    a = make_job()
    b = make_job(dependencies=(a.id,))

    assert storage.insert([b, a], clock.now()) == [b.id, a.id]
    assert stored(storage, b.id).dependencies == (a.id,)


def test_unknown_dependency_is_refused_and_nothing_is_stored(storage, clock, make_job):
    earlier = make_job()
    storage.insert([earlier], clock.now())
    a = make_job()
    b = make_job(dependencies=(a.id, "00000000-0000-4000-8000-000000000000"))

    with pytest.raises(UnknownDependencyError):
        storage.insert([a, b], clock.now())

    assert storage.get(a.id) is None
    assert storage.get(b.id) is None
    assert ids(all_jobs(storage)) == [earlier.id]


def test_failed_insert_does_not_store_the_jobs_before_the_failure(storage, clock, make_job):
    existing = make_job(unique_key="k")
    storage.insert([existing], clock.now())
    duplicate = make_job(unique_key="k")
    fresh = make_job(unique_key="other")
    broken = make_job(dependencies=("00000000-0000-4000-8000-000000000000",))

    with pytest.raises(UnknownDependencyError):
        storage.insert([duplicate, fresh, broken], clock.now())

    assert ids(all_jobs(storage)) == [existing.id]
    # The key "other" was not taken by the refused call.
    again = make_job(unique_key="other")
    assert storage.insert([again], clock.now()) == [again.id]


@pytest.mark.parametrize("size", [1, 2, 3])
def test_cycle_is_refused_and_nothing_is_stored(storage, clock, make_job, size):
    free = make_job()
    ring = [make_job() for _ in range(size)]
    # Each job depends on the next; the last one on the first.
    ring = [
        attrs.evolve(job, dependencies=(ring[(i + 1) % size].id,)) for i, job in enumerate(ring)
    ]

    with pytest.raises(DependencyCycleError):
        storage.insert([free, *ring], clock.now())

    assert all_jobs(storage) == []


def test_id_already_stored_is_refused_and_nothing_is_stored(storage, clock, make_job):
    first = make_job(name="first")
    storage.insert([first], clock.now())
    other = make_job()
    again = make_job(id=first.id, name="again")

    with pytest.raises(InvalidJobError):
        storage.insert([other, again], clock.now())

    assert storage.get(other.id) is None
    assert stored(storage, first.id).name == "first"
    assert ids(all_jobs(storage)) == [first.id]


def test_unique_key_of_a_pending_job_returns_its_id(storage, clock, make_job):
    first = make_job(unique_key="k")
    storage.insert([first], clock.now())
    second = make_job(unique_key="k")

    assert storage.insert([second], clock.now()) == [first.id]
    assert storage.get(second.id) is None
    assert ids(all_jobs(storage)) == [first.id]


def test_unique_key_of_a_running_job_returns_its_id(storage, clock, make_job):
    first = make_job(unique_key="k")
    storage.insert([first], clock.now())
    storage.claim("w1", 1, clock.now(), 30.0)
    second = make_job(unique_key="k")

    assert storage.insert([second], clock.now()) == [first.id]
    assert storage.get(second.id) is None


def test_unique_key_of_another_key_is_stored(storage, clock, make_job):
    first = make_job(unique_key="k1")
    second = make_job(unique_key="k2")

    assert storage.insert([first, second], clock.now()) == [first.id, second.id]
    assert storage.get(second.id) is not None


@pytest.mark.parametrize("status", ["failed", "timeout", "cancelled"])
def test_failed_and_cancelled_jobs_do_not_hold_a_key(storage, clock, make_job, status):
    first = make_job(unique_key="k")
    storage.insert([first], clock.now())
    end_badly(storage, clock.now(), first.id, status)
    second = make_job(unique_key="k")
    third = make_job(unique_key="k", unique_scope="success")

    assert storage.insert([second], clock.now()) == [second.id]
    assert stored(storage, second.id).status == JobStatus.PENDING
    # The pending second job now holds the key.
    assert storage.insert([third], clock.now()) == [second.id]


def test_user_cancelled_job_does_not_hold_a_key(storage, clock, make_job):
    first = make_job(unique_key="k")
    storage.insert([first], clock.now())
    storage.cancel([first.id], clock.now(), "not needed")
    second = make_job(unique_key="k")

    assert storage.insert([second], clock.now()) == [second.id]


def test_completed_job_holds_a_key_only_for_scope_success(storage, clock, make_job):
    first = make_job(unique_key="k")
    storage.insert([first], clock.now())
    complete(storage, clock.now(), first.id)

    again_success = make_job(unique_key="k", unique_scope="success")
    assert storage.insert([again_success], clock.now()) == [first.id]
    assert storage.get(again_success.id) is None

    again_active = make_job(unique_key="k", unique_scope="active")
    assert storage.insert([again_active], clock.now()) == [again_active.id]
    assert stored(storage, again_active.id).status == JobStatus.PENDING


def test_dependents_of_a_deduplicated_job_point_at_the_existing_job(storage, clock, make_job):
    existing = make_job(unique_key="k")
    storage.insert([existing], clock.now())
    duplicate = make_job(unique_key="k")
    child = make_job(dependencies=(duplicate.id,))
    grandchild = make_job(dependencies=(child.id, duplicate.id))

    result = storage.insert([duplicate, child, grandchild], clock.now())

    assert result == [existing.id, child.id, grandchild.id]
    assert storage.get(duplicate.id) is None
    assert stored(storage, child.id).dependencies == (existing.id,)
    assert stored(storage, grandchild.id).dependencies == (child.id, existing.id)


@pytest.mark.parametrize("status", ["failed", "timeout", "cancelled"])
def test_dependency_already_ended_badly_stores_the_job_cancelled(storage, clock, make_job, status):
    parent = make_job()
    storage.insert([parent], clock.now())
    end_badly(storage, clock.now(), parent.id, status)
    child = make_job(dependencies=(parent.id,))

    assert storage.insert([child], clock.now()) == [child.id]
    got = stored(storage, child.id)
    assert got.status == JobStatus.CANCELLED
    assert got.error is not None
    assert parent.id in got.error


def test_dependency_already_completed_stores_the_job_pending(storage, clock, make_job):
    parent = make_job()
    storage.insert([parent], clock.now())
    complete(storage, clock.now(), parent.id)
    child = make_job(dependencies=(parent.id,))

    storage.insert([child], clock.now())

    got = stored(storage, child.id)
    assert got.status == JobStatus.PENDING
    assert got.error is None


def test_dependent_of_a_job_deduplicated_into_a_completed_one_is_ready(storage, clock, make_job):
    existing = make_job(unique_key="k")
    storage.insert([existing], clock.now())
    complete(storage, clock.now(), existing.id)
    duplicate = make_job(unique_key="k", unique_scope="success")
    child = make_job(dependencies=(duplicate.id,))

    assert storage.insert([duplicate, child], clock.now()) == [existing.id, child.id]

    assert stored(storage, child.id).dependencies == (existing.id,)
    assert ids(storage.claim("w1", 10, clock.now(), 30.0)) == [child.id]


def test_dependent_of_a_job_deduplicated_into_a_pending_one_waits(storage, clock, make_job):
    existing = make_job(unique_key="k", queue="first")
    storage.insert([existing], clock.now())
    duplicate = make_job(unique_key="k")
    child = make_job(dependencies=(duplicate.id,), priority=10)
    storage.insert([duplicate, child], clock.now())

    assert ids(storage.claim("w1", 10, clock.now(), 30.0, queues=["default"])) == []
    complete(storage, clock.now(), existing.id)
    assert ids(storage.claim("w1", 10, clock.now(), 30.0)) == [child.id]


def test_jobs_stored_cancelled_cancel_their_dependents_in_the_same_call(storage, clock, make_job):
    parent = make_job()
    storage.insert([parent], clock.now())
    end_badly(storage, clock.now(), parent.id, "failed")
    child = make_job(dependencies=(parent.id,))
    grandchild = make_job(dependencies=(child.id,))

    storage.insert([grandchild, child], clock.now())

    assert stored(storage, child.id).status == JobStatus.CANCELLED
    got = stored(storage, grandchild.id)
    assert got.status == JobStatus.CANCELLED
    assert got.error is not None
    assert child.id in got.error or parent.id in got.error
    assert storage.claim("w1", 10, clock.now(), 30.0) == []
