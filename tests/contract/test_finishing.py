"""Contract of `Storage.finish`: outcomes, fencing, retries, cascades and hand-backs."""

from __future__ import annotations

import pytest

from gigq_core.records import JobStatus, Outcome, cascade_reason
from tests.contract._factory import BOOM, LEASE, claim_one, complete, ids, seconds, stored


def test_completed_outcome_stores_the_result(storage, clock, make_job):
    job = make_job()
    storage.insert([job], clock.now())
    claimed = claim_one(storage, clock.now(), job.id)
    clock.advance(3)
    now = clock.now()

    [transition] = storage.finish(
        [Outcome(job_id=job.id, token=claimed.token, status="completed", result='{"x": 1}')], now
    )

    assert transition is not None
    assert transition.previous == JobStatus.RUNNING
    assert transition.job.id == job.id
    assert transition.cancelled == ()
    for record in (transition.job, stored(storage, job.id)):
        assert record.status == JobStatus.COMPLETED
        assert record.result == '{"x": 1}'
        assert record.attempts == 1
    [execution] = storage.executions(job.id)
    assert execution.status == "completed"
    assert execution.result == '{"x": 1}'
    assert execution.error is None
    assert execution.completed_at == now


def test_completed_dependency_makes_dependents_ready(storage, clock, make_job):
    a = make_job()
    b = make_job(dependencies=(a.id,))
    storage.insert([a, b], clock.now())

    complete(storage, clock.now(), a.id)

    assert ids(storage.claim("w1", 10, clock.now(), LEASE)) == [b.id]


def test_wrong_token_changes_nothing(storage, clock, make_job):
    job = make_job()
    storage.insert([job], clock.now())
    claim_one(storage, clock.now(), job.id)
    before = stored(storage, job.id)
    executions = storage.executions(job.id)
    clock.advance(1)

    for status in ("completed", "failed", "timeout", "cancelled", "handed_back"):
        outcome = Outcome(job_id=job.id, token="not-the-token", status=status, error=BOOM)
        assert storage.finish([outcome], clock.now()) == [None]

    assert storage.get(job.id) == before
    assert storage.executions(job.id) == executions


def test_unknown_job_is_fenced(storage, clock):
    outcome = Outcome(job_id="00000000-0000-4000-8000-000000000000", token="t", status="completed")

    assert storage.finish([outcome], clock.now()) == [None]


def test_stale_token_of_a_rescued_attempt_changes_nothing(storage, clock, make_job):
    job = make_job()
    storage.insert([job], clock.now())
    stale = claim_one(storage, clock.now(), job.id, worker_id="w1").token
    clock.advance(LEASE + 1)
    storage.rescue(clock.now())
    fresh = claim_one(storage, clock.now(), job.id, worker_id="w2")
    before = stored(storage, job.id)

    late = Outcome(job_id=job.id, token=stale, status="completed", result="1")
    assert storage.finish([late], clock.now()) == [None]

    assert storage.get(job.id) == before
    assert before.status == JobStatus.RUNNING
    assert before.token == fresh.token
    assert storage.executions(job.id)[-1].status == "running"


def test_second_report_of_an_attempt_is_fenced(storage, clock, make_job):
    job = make_job()
    storage.insert([job], clock.now())
    token = claim_one(storage, clock.now(), job.id).token
    done = Outcome(job_id=job.id, token=token, status="completed", result="1")
    assert storage.finish([done], clock.now()) != [None]
    after = stored(storage, job.id)
    executions = storage.executions(job.id)
    clock.advance(1)

    assert storage.finish([done], clock.now()) == [None]
    failed = Outcome(job_id=job.id, token=token, status="failed", error=BOOM)
    assert storage.finish([failed], clock.now()) == [None]

    assert storage.get(job.id) == after
    assert storage.executions(job.id) == executions


@pytest.mark.parametrize("status", ["failed", "timeout"])
def test_failure_with_retry_at_is_pending_again_not_before_retry_at(
    storage, clock, make_job, status
):
    job = make_job()
    child = make_job(dependencies=(job.id,))
    storage.insert([job, child], clock.now())
    token = claim_one(storage, clock.now(), job.id).token
    clock.advance(2)
    now = clock.now()
    retry_at = now + seconds(60)

    [transition] = storage.finish(
        [Outcome(job_id=job.id, token=token, status=status, error=BOOM, retry_at=retry_at)], now
    )

    assert transition is not None
    assert transition.previous == JobStatus.RUNNING
    assert transition.cancelled == ()
    for record in (transition.job, stored(storage, job.id)):
        assert record.status == JobStatus.PENDING
        assert record.attempts == 1
        assert record.error is not None
        assert "boom" in record.error
    assert stored(storage, child.id).status == JobStatus.PENDING
    [execution] = storage.executions(job.id)
    assert execution.status == status
    assert execution.error == BOOM
    assert execution.completed_at == now

    assert storage.claim("w1", 10, now, LEASE) == []
    clock.advance(59)
    assert storage.claim("w1", 10, clock.now(), LEASE) == []
    clock.advance(1)
    [again] = storage.claim("w1", 10, clock.now(), LEASE)
    assert again.id == job.id
    assert again.attempts == 2


@pytest.mark.parametrize("status", ["failed", "timeout"])
def test_failure_without_retry_at_is_final(storage, clock, make_job, status):
    job = make_job()
    storage.insert([job], clock.now())
    token = claim_one(storage, clock.now(), job.id).token
    clock.advance(2)
    now = clock.now()

    [transition] = storage.finish(
        [Outcome(job_id=job.id, token=token, status=status, error=BOOM)], now
    )

    assert transition is not None
    assert transition.previous == JobStatus.RUNNING
    assert transition.error == BOOM
    for record in (transition.job, stored(storage, job.id)):
        assert record.status == JobStatus(status)
        assert record.error is not None
        assert "boom" in record.error
    [execution] = storage.executions(job.id)
    assert execution.status == status
    assert execution.error == BOOM
    assert execution.completed_at == now
    clock.advance(3600)
    assert storage.claim("w1", 10, clock.now(), LEASE) == []


@pytest.mark.parametrize("status", ["failed", "timeout", "cancelled"])
def test_final_failure_cancels_dependents_transitively(storage, clock, make_job, status):
    a = make_job(name="upstream")
    b = make_job(dependencies=(a.id,))
    c = make_job(dependencies=(b.id,))
    d = make_job(dependencies=(a.id,))
    other = make_job()
    storage.insert([a, b, c, d, other], clock.now())
    token = claim_one(storage, clock.now(), a.id).token

    [transition] = storage.finish(
        [Outcome(job_id=a.id, token=token, status=status, error=BOOM)], clock.now()
    )

    assert transition is not None
    assert transition.job.status == JobStatus(status)
    assert sorted(ids(transition.cancelled)) == sorted([b.id, c.id, d.id])
    for record in transition.cancelled:
        assert record.status == JobStatus.CANCELLED
    for job_id in (b.id, c.id, d.id):
        assert stored(storage, job_id).status == JobStatus.CANCELLED
    assert stored(storage, b.id).error == cascade_reason(a.id, a.name, status)
    assert stored(storage, d.id).error == cascade_reason(a.id, a.name, status)
    assert stored(storage, c.id).error in (
        cascade_reason(b.id, b.name, "cancelled"),
        cascade_reason(a.id, a.name, status),
    )
    assert stored(storage, other.id).status == JobStatus.PENDING
    assert ids(storage.claim("w1", 10, clock.now(), LEASE)) == [other.id]


def test_cascade_skips_dependents_already_finished(storage, clock, make_job):
    a = make_job()
    b = make_job()
    c = make_job(dependencies=(a.id, b.id))
    storage.insert([a, b, c], clock.now())
    complete(storage, clock.now(), a.id)
    token = claim_one(storage, clock.now(), b.id).token

    [transition] = storage.finish(
        [Outcome(job_id=b.id, token=token, status="failed", error=BOOM)], clock.now()
    )

    assert ids(transition.cancelled) == [c.id]
    assert stored(storage, a.id).status == JobStatus.COMPLETED


def test_cancelled_outcome_ends_the_job_cancelled(storage, clock, make_job):
    job = make_job()
    storage.insert([job], clock.now())
    claimed = claim_one(storage, clock.now(), job.id)
    storage.cancel([job.id], clock.now(), "stop it")

    [transition] = storage.finish(
        [Outcome(job_id=job.id, token=claimed.token, status="cancelled")], clock.now()
    )

    assert transition is not None
    assert transition.previous == JobStatus.RUNNING
    assert transition.job.status == JobStatus.CANCELLED
    assert stored(storage, job.id).status == JobStatus.CANCELLED
    assert storage.executions(job.id)[0].status == "cancelled"


def test_handed_back_job_is_pending_at_once_without_counting_the_attempt(storage, clock, make_job):
    job = make_job()
    storage.insert([job], clock.now())
    token = claim_one(storage, clock.now(), job.id).token

    [transition] = storage.finish(
        [Outcome(job_id=job.id, token=token, status="handed_back")], clock.now()
    )

    assert transition is not None
    assert transition.previous == JobStatus.RUNNING
    for record in (transition.job, stored(storage, job.id)):
        assert record.status == JobStatus.PENDING
        assert record.attempts == 0
    assert storage.executions(job.id)[0].status == "handed_back"
    [again] = storage.claim("w2", 10, clock.now(), LEASE)
    assert again.id == job.id
    assert again.attempts == 1


def test_hand_back_counts_the_attempt_after_three_hand_backs(storage, clock, make_job):
    job = make_job()
    storage.insert([job], clock.now())

    attempts_after = []
    for _ in range(5):
        token = claim_one(storage, clock.now(), job.id).token
        [transition] = storage.finish(
            [Outcome(job_id=job.id, token=token, status="handed_back")], clock.now()
        )
        assert transition is not None
        assert transition.job.status == JobStatus.PENDING
        attempts_after.append(stored(storage, job.id).attempts)
        clock.advance(1)

    assert attempts_after == [0, 0, 0, 1, 2]
    assert len(storage.executions(job.id)) == 5


def test_a_counted_hand_back_that_takes_the_last_attempt_fails_the_job(storage, clock, make_job):
    # docs/guarantees.md D4: after three free hand-backs the next one counts; with no attempt
    # left the job ends failed (and its dependents cancelled) instead of running again.
    job = make_job(max_attempts=1)
    child = make_job(dependencies=(job.id,))
    storage.insert([job, child], clock.now())

    for round in range(4):
        token = claim_one(storage, clock.now(), job.id).token
        [transition] = storage.finish(
            [Outcome(job_id=job.id, token=token, status="handed_back")], clock.now()
        )
        assert transition is not None
        clock.advance(1)
        if round < 3:
            assert transition.job.status == JobStatus.PENDING
            assert transition.cancelled == ()

    for record in (transition.job, stored(storage, job.id)):
        assert record.status == JobStatus.FAILED
        assert record.attempts == 1
        assert record.error is not None and "handed back 4 times" in record.error
        assert record.completed_at is not None
    assert [r.id for r in transition.cancelled] == [child.id]
    assert stored(storage, child.id).status == JobStatus.CANCELLED
    assert storage.claim("w2", 10, clock.now(), LEASE) == []
    assert len(storage.executions(job.id)) == 4


def test_several_outcomes_in_one_call_each_get_an_entry(storage, clock, make_job):
    jobs = [make_job() for _ in range(4)]
    storage.insert(jobs, clock.now())
    claimed = {job.id: job.token for job in storage.claim("w1", 4, clock.now(), LEASE)}
    a, b, c, d = ids(jobs)
    retry_at = clock.now() + seconds(30)

    result = storage.finish(
        [
            Outcome(job_id=a, token=claimed[a], status="completed", result="1"),
            Outcome(job_id=b, token="stale", status="completed", result="2"),
            Outcome(job_id=c, token=claimed[c], status="failed", error=BOOM, retry_at=retry_at),
            Outcome(job_id=d, token=claimed[d], status="failed", error=BOOM),
        ],
        clock.now(),
    )

    assert len(result) == 4
    assert result[1] is None
    assert [t.job.id for t in (result[0], result[2], result[3])] == [a, c, d]
    assert [t.job.status for t in (result[0], result[2], result[3])] == [
        JobStatus.COMPLETED,
        JobStatus.PENDING,
        JobStatus.FAILED,
    ]
    assert stored(storage, a).result == "1"
    assert stored(storage, b).status == JobStatus.RUNNING
    assert stored(storage, c).status == JobStatus.PENDING
    assert stored(storage, d).status == JobStatus.FAILED


def test_the_same_attempt_twice_in_one_call_applies_once(storage, clock, make_job):
    job = make_job()
    storage.insert([job], clock.now())
    token = claim_one(storage, clock.now(), job.id).token

    result = storage.finish(
        [
            Outcome(job_id=job.id, token=token, status="completed", result="1"),
            Outcome(job_id=job.id, token=token, status="failed", error=BOOM),
        ],
        clock.now(),
    )

    assert result[0] is not None
    assert result[1] is None
    assert stored(storage, job.id).status == JobStatus.COMPLETED
    assert [e.status for e in storage.executions(job.id)] == ["completed"]


def test_a_dependent_of_two_failures_in_one_call_is_cancelled_once(storage, clock, make_job):
    a = make_job()
    b = make_job()
    c = make_job(dependencies=(a.id, b.id))
    storage.insert([a, b, c], clock.now())
    tokens = {job.id: job.token for job in storage.claim("w1", 2, clock.now(), LEASE)}

    result = storage.finish(
        [
            Outcome(job_id=a.id, token=tokens[a.id], status="failed", error=BOOM),
            Outcome(job_id=b.id, token=tokens[b.id], status="timeout", error=BOOM),
        ],
        clock.now(),
    )

    assert all(t is not None for t in result)
    cancelled = [record.id for t in result for record in t.cancelled]
    assert cancelled == [c.id]
    assert stored(storage, c.id).error == cascade_reason(a.id, a.name, "failed")
