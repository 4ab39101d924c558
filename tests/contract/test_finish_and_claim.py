"""Contract of `Storage.finish_and_claim`: finish, then claim, as one transaction."""

from __future__ import annotations

from gigq_core.records import JobStatus, Outcome
from tests.contract._factory import LEASE, claim_one, seconds, stored


def test_reports_and_claims_in_one_step(storage, clock, make_job):
    first = make_job(priority=5)
    low = make_job(priority=0)
    high = make_job(priority=9)
    storage.insert([first], clock.now())
    claimed = claim_one(storage, clock.now(), first.id)
    storage.insert([low, high], clock.now())
    clock.advance(1)
    now = clock.now()

    transitions, jobs = storage.finish_and_claim(
        [Outcome(job_id=first.id, token=claimed.token, status="completed", result="1")],
        now,
        "w1",
        1,
        LEASE,
    )

    [transition] = transitions
    assert transition is not None and transition.job.status == JobStatus.COMPLETED
    assert [j.id for j in jobs] == [high.id]  # claim order still holds
    assert jobs[0].status == JobStatus.RUNNING and jobs[0].worker_id == "w1"
    assert jobs[0].lease_expires_at == now + seconds(LEASE)
    assert stored(storage, low.id).status == JobStatus.PENDING


def test_a_completion_releases_its_dependent_for_the_same_claim(storage, clock, make_job):
    parent = make_job()
    child = make_job(dependencies=(parent.id,))
    storage.insert([parent, child], clock.now())
    claimed = claim_one(storage, clock.now(), parent.id)

    _, jobs = storage.finish_and_claim(
        [Outcome(job_id=parent.id, token=claimed.token, status="completed", result="1")],
        clock.now(),
        "w1",
        5,
        LEASE,
    )

    assert [j.id for j in jobs] == [child.id]


def test_a_stale_outcome_is_fenced_and_claiming_still_happens(storage, clock, make_job):
    job = make_job()
    other = make_job()
    storage.insert([job], clock.now())
    claim_one(storage, clock.now(), job.id)
    storage.insert([other], clock.now())

    transitions, jobs = storage.finish_and_claim(
        [Outcome(job_id=job.id, token="stale", status="completed", result="1")],
        clock.now(),
        "w1",
        1,
        LEASE,
        queues=None,
    )

    assert transitions == [None]
    assert stored(storage, job.id).status == JobStatus.RUNNING
    assert [j.id for j in jobs] == [other.id]


def test_limit_zero_only_finishes(storage, clock, make_job):
    job = make_job()
    waiting = make_job()
    storage.insert([job], clock.now())
    claimed = claim_one(storage, clock.now(), job.id)
    storage.insert([waiting], clock.now())

    transitions, jobs = storage.finish_and_claim(
        [Outcome(job_id=job.id, token=claimed.token, status="completed", result="1")],
        clock.now(),
        "w1",
        0,
        LEASE,
    )

    assert transitions[0] is not None
    assert jobs == []
    assert stored(storage, waiting.id).status == JobStatus.PENDING
