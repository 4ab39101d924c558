"""Contract of `Storage.prune`: which finished jobs are deleted, with their executions."""

from __future__ import annotations

from gigq_core.records import JobFilter, JobStatus
from tests.contract._factory import claim_one, complete, end_badly, ids, seconds, stored


def test_prune_deletes_jobs_in_statuses_updated_before_and_returns_the_count(
    storage, clock, make_job
):
    old_done = [make_job(queue="a"), make_job(queue="b")]
    old_failed = make_job(queue="f")
    old_pending = make_job(queue="p")
    storage.insert([*old_done, old_failed, old_pending], clock.now())
    for job in old_done:
        complete(storage, clock.now(), job.id)
    end_badly(storage, clock.now(), old_failed.id, "failed")
    clock.advance(100)
    new_done = make_job(queue="n")
    storage.insert([new_done], clock.now())
    complete(storage, clock.now(), new_done.id)

    deleted = storage.prune(clock.now() - seconds(50), ["completed"])

    assert deleted == 2
    for job in old_done:
        assert storage.get(job.id) is None
    assert stored(storage, old_failed.id).status == JobStatus.FAILED
    assert stored(storage, old_pending.id).status == JobStatus.PENDING
    assert stored(storage, new_done.id).status == JobStatus.COMPLETED
    assert sorted(ids(storage.list_jobs(JobFilter()))) == sorted(
        [old_failed.id, old_pending.id, new_done.id]
    )


def test_prune_deletes_the_jobs_executions(storage, clock, make_job):
    job = make_job()
    storage.insert([job], clock.now())
    complete(storage, clock.now(), job.id)
    assert len(storage.executions(job.id)) == 1
    clock.advance(10)

    assert storage.prune(clock.now(), ["completed"]) == 1

    assert storage.get(job.id) is None
    assert storage.executions(job.id) == []


def test_prune_several_statuses(storage, clock, make_job):
    done = make_job(queue="d")
    failed = make_job(queue="f")
    cancelled = make_job(queue="c")
    storage.insert([done, failed, cancelled], clock.now())
    complete(storage, clock.now(), done.id)
    end_badly(storage, clock.now(), failed.id, "failed")
    storage.cancel([cancelled.id], clock.now(), "stop")
    clock.advance(10)

    assert storage.prune(clock.now(), ["completed", "failed"]) == 2

    assert storage.get(done.id) is None
    assert storage.get(failed.id) is None
    assert stored(storage, cancelled.id).status == JobStatus.CANCELLED


def test_prune_keeps_a_job_an_unfinished_job_depends_on(storage, clock, make_job):
    parent = make_job(queue="a")
    waiting = make_job(queue="b")
    child = make_job(dependencies=(parent.id, waiting.id))
    running_parent = make_job(queue="c")
    running_child = make_job(queue="d", dependencies=(running_parent.id,))
    storage.insert([parent, waiting, child, running_parent, running_child], clock.now())
    complete(storage, clock.now(), parent.id)
    complete(storage, clock.now(), running_parent.id)
    claim_one(storage, clock.now(), running_child.id)
    clock.advance(10)

    assert storage.prune(clock.now(), ["completed"]) == 0

    assert stored(storage, parent.id).status == JobStatus.COMPLETED
    assert stored(storage, running_parent.id).status == JobStatus.COMPLETED
    assert len(storage.executions(parent.id)) == 1


def test_prune_deletes_a_job_whose_dependents_finished(storage, clock, make_job):
    parent = make_job()
    child = make_job(dependencies=(parent.id,))
    storage.insert([parent, child], clock.now())
    complete(storage, clock.now(), parent.id)
    complete(storage, clock.now(), child.id)
    clock.advance(10)

    assert storage.prune(clock.now(), ["completed"]) == 2

    assert storage.get(parent.id) is None
    assert storage.get(child.id) is None


def test_prune_nothing_to_delete(storage, clock, make_job):
    job = make_job()
    storage.insert([job], clock.now())

    assert storage.prune(clock.now() + seconds(10), ["completed"]) == 0
    assert stored(storage, job.id).status == JobStatus.PENDING


def test_prune_goes_by_when_the_job_was_last_updated(storage, clock, make_job):
    job = make_job()
    storage.insert([job], clock.now())
    submitted = clock.now()
    clock.advance(100)
    complete(storage, clock.now(), job.id)

    assert storage.prune(submitted + seconds(50), ["completed"]) == 0
    assert stored(storage, job.id).status == JobStatus.COMPLETED
    assert storage.prune(clock.now() + seconds(1), ["completed"]) == 1
