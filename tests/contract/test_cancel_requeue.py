"""Contract of `Storage.cancel` (with cascade) and `Storage.requeue` (with revival)."""

from __future__ import annotations

import pytest

from gigq_core.records import JobStatus, Outcome, cascade_reason
from tests.contract._factory import (
    BOOM,
    LEASE,
    claim_one,
    complete,
    end_badly,
    ids,
    seconds,
    stored,
)

UNKNOWN = "00000000-0000-4000-8000-000000000000"


# -- cancel --------------------------------------------------------------------------------


def test_cancel_pending_job_cancels_it_and_its_dependents(storage, clock, make_job):
    a = make_job(name="root")
    b = make_job(dependencies=(a.id,))
    c = make_job(dependencies=(b.id,))
    other = make_job()
    storage.insert([a, b, c, other], clock.now())
    clock.advance(1)

    [transition] = storage.cancel([a.id], clock.now(), "not needed any more")

    assert transition.previous == JobStatus.PENDING
    for record in (transition.job, stored(storage, a.id)):
        assert record.id == a.id
        assert record.status == JobStatus.CANCELLED
        assert "not needed any more" in (record.error or "")
    assert sorted(ids(transition.cancelled)) == sorted([b.id, c.id])
    assert all(r.status == JobStatus.CANCELLED for r in transition.cancelled)
    assert stored(storage, b.id).status == JobStatus.CANCELLED
    assert stored(storage, b.id).error == cascade_reason(a.id, a.name, "cancelled")
    assert stored(storage, c.id).status == JobStatus.CANCELLED
    assert stored(storage, other.id).status == JobStatus.PENDING
    assert ids(storage.claim("w1", 10, clock.now(), LEASE)) == [other.id]


def test_cancel_returns_transitions_in_the_order_given(storage, clock, make_job):
    jobs = [make_job() for _ in range(3)]
    storage.insert(jobs, clock.now())
    order = [jobs[2].id, jobs[0].id, jobs[1].id]

    assert [t.job.id for t in storage.cancel(order, clock.now(), "stop")] == order


def test_cancel_the_same_job_twice_changes_it_once(storage, clock, make_job):
    job = make_job()
    storage.insert([job], clock.now())

    assert [t.job.id for t in storage.cancel([job.id, job.id], clock.now(), "stop")] == [job.id]
    assert storage.cancel([job.id], clock.now(), "stop") == []


def test_cancel_running_job_records_the_request(storage, clock, make_job):
    job = make_job()
    child = make_job(dependencies=(job.id,))
    storage.insert([job, child], clock.now())
    claimed = claim_one(storage, clock.now(), job.id)

    [transition] = storage.cancel([job.id], clock.now(), "stop")

    assert transition.previous == JobStatus.RUNNING
    assert transition.cancelled == ()
    for record in (transition.job, stored(storage, job.id)):
        assert record.status == JobStatus.RUNNING
        assert record.cancel_requested is True
        assert record.token == claimed.token
    assert stored(storage, child.id).status == JobStatus.PENDING
    assert storage.executions(job.id)[0].status == "running"
    reply = storage.heartbeat("w1", {job.id: claimed.token}, clock.now(), LEASE)
    assert reply.cancel_requested == frozenset({job.id})


def test_cancel_leaves_finished_and_unknown_jobs_alone(storage, clock, make_job):
    done = make_job()
    failed = make_job()
    cancelled = make_job()
    pending = make_job()
    storage.insert([done, failed, cancelled, pending], clock.now())
    complete(storage, clock.now(), done.id)
    end_badly(storage, clock.now(), failed.id, "failed")
    storage.cancel([cancelled.id], clock.now(), "first")
    before = {job.id: stored(storage, job.id) for job in (done, failed, cancelled)}
    clock.advance(1)

    result = storage.cancel(
        [UNKNOWN, done.id, failed.id, cancelled.id, pending.id], clock.now(), "again"
    )

    assert [t.job.id for t in result] == [pending.id]
    assert storage.get(UNKNOWN) is None
    for job_id, record in before.items():
        assert storage.get(job_id) == record


# -- requeue -------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["failed", "timeout", "cancelled"])
def test_requeue_puts_an_ended_job_back_to_pending_reset(storage, clock, make_job, status):
    job = make_job(run_at=clock.now())
    storage.insert([job], clock.now())
    end_badly(storage, clock.now(), job.id, status)
    clock.advance(100)
    now = clock.now()

    [transition] = storage.requeue([job.id], now)

    assert transition.previous == JobStatus(status)
    for record in (transition.job, stored(storage, job.id)):
        assert record.id == job.id
        assert record.status == JobStatus.PENDING
        assert record.attempts == 0
        assert record.result is None
        assert record.error is None
        assert record.started_at is None
        assert record.completed_at is None
        assert record.worker_id is None
        assert record.run_at == now
    [again] = storage.claim("w2", 10, now, LEASE)
    assert again.id == job.id
    assert again.attempts == 1


def test_requeue_of_a_user_cancelled_pending_job_keeps_its_schedule(storage, clock, make_job):
    job = make_job(run_at=clock.now() + seconds(3600))
    storage.insert([job], clock.now())
    storage.cancel([job.id], clock.now(), "oops")
    clock.advance(5)

    [transition] = storage.requeue([job.id], clock.now())

    assert transition.previous == JobStatus.CANCELLED
    record = stored(storage, job.id)
    assert record.status == JobStatus.PENDING
    assert record.error is None
    # Still an hour ahead: the job waits for its time, as it did before the cancel.
    assert record.run_at == job.run_at
    assert storage.claim("w1", 1, clock.now(), LEASE) == []
    clock.advance(3600)
    assert ids(storage.claim("w1", 1, clock.now(), LEASE)) == [job.id]


def test_requeue_revives_exactly_the_dependents_its_end_cancelled(storage, clock, make_job):
    a = make_job(name="a", queue="a")
    x = make_job(name="x", queue="x")
    b = make_job(dependencies=(a.id,))
    c = make_job(dependencies=(b.id,))
    user_cancelled = make_job(dependencies=(a.id,))
    cancelled_by_x = make_job(dependencies=(a.id, x.id))
    storage.insert([a, x, b, c, user_cancelled, cancelled_by_x], clock.now())
    storage.cancel([user_cancelled.id], clock.now(), "by hand")
    end_badly(storage, clock.now(), x.id, "failed")
    assert stored(storage, cancelled_by_x.id).status == JobStatus.CANCELLED
    end_badly(storage, clock.now(), a.id, "failed")
    assert stored(storage, b.id).status == JobStatus.CANCELLED
    assert stored(storage, c.id).status == JobStatus.CANCELLED
    clock.advance(10)

    [transition] = storage.requeue([a.id], clock.now())

    assert transition.job.status == JobStatus.PENDING
    assert sorted(ids(transition.revived)) == sorted([b.id, c.id])
    assert all(r.status == JobStatus.PENDING for r in transition.revived)
    assert stored(storage, b.id).status == JobStatus.PENDING
    assert stored(storage, c.id).status == JobStatus.PENDING
    assert stored(storage, user_cancelled.id).status == JobStatus.CANCELLED
    assert stored(storage, cancelled_by_x.id).status == JobStatus.CANCELLED
    # The revived chain runs once its dependency completes.
    complete(storage, clock.now(), a.id)
    assert ids(storage.claim("w1", 10, clock.now(), LEASE)) == [b.id]


def test_requeue_revives_dependents_of_a_user_cancelled_job(storage, clock, make_job):
    a = make_job()
    b = make_job(dependencies=(a.id,))
    storage.insert([a, b], clock.now())
    storage.cancel([a.id], clock.now(), "by hand")

    [transition] = storage.requeue([a.id], clock.now())

    assert ids(transition.revived) == [b.id]
    assert stored(storage, b.id).status == JobStatus.PENDING


def test_requeue_leaves_pending_running_completed_and_unknown_jobs_alone(storage, clock, make_job):
    pending = make_job(queue="p")
    running = make_job(queue="r")
    done = make_job(queue="d")
    failed = make_job(queue="f")
    storage.insert([pending, running, done, failed], clock.now())
    complete(storage, clock.now(), done.id)
    end_badly(storage, clock.now(), failed.id, "failed")
    claim_one(storage, clock.now(), running.id)
    before = {job.id: stored(storage, job.id) for job in (pending, running, done)}
    clock.advance(1)

    result = storage.requeue([UNKNOWN, pending.id, running.id, done.id, failed.id], clock.now())

    assert [t.job.id for t in result] == [failed.id]
    for job_id, record in before.items():
        assert storage.get(job_id) == record
    assert before[pending.id].status == JobStatus.PENDING
    assert before[running.id].status == JobStatus.RUNNING
    assert before[done.id].status == JobStatus.COMPLETED


def test_late_report_after_requeue_is_fenced(storage, clock, make_job):
    job = make_job()
    storage.insert([job], clock.now())
    token = claim_one(storage, clock.now(), job.id).token
    storage.finish([Outcome(job_id=job.id, token=token, status="failed", error=BOOM)], clock.now())
    storage.requeue([job.id], clock.now())
    before = stored(storage, job.id)

    late = Outcome(job_id=job.id, token=token, status="completed", result="1")
    assert storage.finish([late], clock.now()) == [None]
    assert storage.get(job.id) == before


def test_requeue_revives_dependents_stored_cancelled_because_of_it(storage, clock, make_job):
    parent = make_job()
    storage.insert([parent], clock.now())
    end_badly(storage, clock.now(), parent.id, "failed")
    child = make_job(dependencies=(parent.id,))
    storage.insert([child], clock.now())
    assert stored(storage, child.id).status == JobStatus.CANCELLED

    [transition] = storage.requeue([parent.id], clock.now())

    assert ids(transition.revived) == [child.id]
    assert stored(storage, child.id).status == JobStatus.PENDING
    complete(storage, clock.now(), parent.id)
    assert ids(storage.claim("w1", 10, clock.now(), LEASE)) == [child.id]


def test_executions_stay_in_the_order_they_ran_across_a_requeue(storage, clock, make_job):
    # Found by the lifecycle state machine: a requeue restarts attempts at 1, so ordering
    # executions by attempt put the new attempt before the old ones when their start times
    # were equal (a clock that did not move).
    job = make_job(max_attempts=2)
    storage.insert([job], clock.now())
    first = claim_one(storage, clock.now(), job.id).token
    retry = Outcome(job_id=job.id, token=first, status="failed", error=BOOM, retry_at=clock.now())
    storage.finish([retry], clock.now())
    second = claim_one(storage, clock.now(), job.id).token
    storage.finish([Outcome(job_id=job.id, token=second, status="failed", error=BOOM)], clock.now())
    storage.requeue([job.id], clock.now())
    third = claim_one(storage, clock.now(), job.id).token
    expected = [(first, "failed"), (second, "failed"), (third, "running")]
    assert [(e.token, e.status) for e in storage.executions(job.id)] == expected
    storage.rescue(clock.now() + seconds(LEASE + 1))
    expected[-1] = (third, "lost")
    assert [(e.token, e.status) for e in storage.executions(job.id)] == expected
