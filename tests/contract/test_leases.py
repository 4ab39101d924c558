"""Contract of `Storage.heartbeat` and `Storage.rescue`: leases, lost workers, fencing."""

from __future__ import annotations

from gigq_core.records import JobStatus, Outcome, WorkerInfo, cascade_reason
from tests.contract._factory import LEASE, claim_one, ids, seconds, stored


def worker(clock, worker_id: str) -> WorkerInfo:
    now = clock.now()
    return WorkerInfo(id=worker_id, host="host", pid=100, started_at=now, last_heartbeat=now)


def test_heartbeat_renews_the_lease_of_a_held_job(storage, clock, make_job):
    job = make_job()
    storage.insert([job], clock.now())
    token = claim_one(storage, clock.now(), job.id).token
    clock.advance(20)

    reply = storage.heartbeat("w1", {job.id: token}, clock.now(), 40.0)

    assert reply.lost == frozenset()
    assert reply.cancel_requested == frozenset()
    record = stored(storage, job.id)
    assert record.lease_expires_at == clock.now() + seconds(40)
    assert record.status == JobStatus.RUNNING
    assert record.token == token
    # The first lease has passed; the renewed one has not.
    clock.advance(LEASE)
    assert storage.rescue(clock.now()) == []
    assert stored(storage, job.id).status == JobStatus.RUNNING


def test_heartbeat_reports_jobs_whose_token_no_longer_holds(storage, clock, make_job):
    held = make_job()
    rescued = make_job()
    done = make_job()
    storage.insert([held, rescued, done], clock.now())
    tokens = {
        job.id: claim_one(storage, clock.now(), job.id).token for job in (held, rescued, done)
    }
    storage.finish(
        [Outcome(job_id=done.id, token=tokens[done.id], status="completed", result="1")],
        clock.now(),
    )
    clock.advance(LEASE - 1)
    storage.heartbeat("w1", {held.id: tokens[held.id]}, clock.now(), LEASE)
    clock.advance(2)
    assert ids(t.job for t in storage.rescue(clock.now())) == [rescued.id]
    rescued_before = stored(storage, rescued.id)
    unknown = "00000000-0000-4000-8000-000000000000"

    reply = storage.heartbeat("w1", {**tokens, unknown: "t"}, clock.now(), LEASE)

    assert reply.lost == frozenset({rescued.id, done.id, unknown})
    assert reply.cancel_requested == frozenset()
    assert storage.get(rescued.id) == rescued_before
    assert stored(storage, done.id).status == JobStatus.COMPLETED
    assert stored(storage, held.id).lease_expires_at == clock.now() + seconds(LEASE)


def test_heartbeat_with_a_wrong_token_does_not_renew(storage, clock, make_job):
    job = make_job()
    storage.insert([job], clock.now())
    claimed = claim_one(storage, clock.now(), job.id)
    clock.advance(10)

    reply = storage.heartbeat("w1", {job.id: "not-the-token"}, clock.now(), LEASE)

    assert reply.lost == frozenset({job.id})
    assert stored(storage, job.id).lease_expires_at == claimed.lease_expires_at


def test_heartbeat_reports_cancel_requests(storage, clock, make_job):
    asked = make_job()
    calm = make_job()
    storage.insert([asked, calm], clock.now())
    asked_token = claim_one(storage, clock.now(), asked.id).token
    calm_token = claim_one(storage, clock.now(), calm.id).token
    storage.cancel([asked.id], clock.now(), "stop")
    clock.advance(10)

    reply = storage.heartbeat("w1", {asked.id: asked_token, calm.id: calm_token}, clock.now(), 60.0)

    assert reply.cancel_requested == frozenset({asked.id})
    assert reply.lost == frozenset()
    assert stored(storage, asked.id).lease_expires_at == clock.now() + seconds(60)


def test_heartbeat_records_that_the_worker_is_alive(storage, clock):
    storage.register_worker(worker(clock, "w1"))
    clock.advance(10)

    storage.heartbeat("w1", {}, clock.now(), LEASE)

    [info] = storage.list_workers()
    assert info.id == "w1"
    assert info.last_heartbeat == clock.now()


def test_rescue_returns_an_expired_job_to_pending_counting_the_attempt(storage, clock, make_job):
    job = make_job(max_attempts=3)
    storage.insert([job], clock.now())
    claim_one(storage, clock.now(), job.id)
    clock.advance(LEASE + 1)
    now = clock.now()

    [transition] = storage.rescue(now)

    assert transition.previous == JobStatus.RUNNING
    assert transition.cancelled == ()
    for record in (transition.job, stored(storage, job.id)):
        assert record.id == job.id
        assert record.status == JobStatus.PENDING
        assert record.attempts == 1
        assert record.error is not None
        assert "worker lost" in record.error
    [execution] = storage.executions(job.id)
    assert execution.status == "lost"
    assert execution.error is not None
    assert "worker lost" in str(execution.error)
    [again] = storage.claim("w2", 10, now, LEASE)
    assert again.id == job.id
    assert again.attempts == 2


def test_rescue_returns_what_changed_in_seq_order(storage, clock, make_job):
    jobs = [make_job(priority=p) for p in (0, 5, 1)]
    storage.insert(jobs, clock.now())
    assert ids(storage.claim("w1", 3, clock.now(), LEASE)) == [jobs[1].id, jobs[2].id, jobs[0].id]
    clock.advance(LEASE + 1)

    assert ids(t.job for t in storage.rescue(clock.now())) == ids(jobs)
    assert storage.rescue(clock.now()) == []


def test_rescue_at_max_attempts_fails_the_job_and_cancels_dependents(storage, clock, make_job):
    job = make_job(max_attempts=1)
    child = make_job(dependencies=(job.id,))
    grandchild = make_job(dependencies=(child.id,))
    storage.insert([job, child, grandchild], clock.now())
    claim_one(storage, clock.now(), job.id)
    clock.advance(LEASE + 1)

    [transition] = storage.rescue(clock.now())

    for record in (transition.job, stored(storage, job.id)):
        assert record.status == JobStatus.FAILED
        assert record.attempts == 1
        assert "worker lost" in (record.error or "")
    assert storage.executions(job.id)[0].status == "lost"
    assert sorted(ids(transition.cancelled)) == sorted([child.id, grandchild.id])
    assert stored(storage, child.id).status == JobStatus.CANCELLED
    assert stored(storage, child.id).error == cascade_reason(job.id, job.name, "failed")
    assert stored(storage, grandchild.id).status == JobStatus.CANCELLED
    assert storage.claim("w2", 10, clock.now(), LEASE) == []


def test_rescue_of_known_dead_workers_before_their_leases_expire(storage, clock, make_job):
    storage.register_worker(worker(clock, "dead"))
    storage.register_worker(worker(clock, "alive"))
    lost = make_job(queue="a")
    kept = make_job(queue="b")
    storage.insert([lost, kept], clock.now())
    claim_one(storage, clock.now(), lost.id, worker_id="dead")
    kept_token = claim_one(storage, clock.now(), kept.id, worker_id="alive").token
    start = clock.now()
    clock.advance(5)

    [transition] = storage.rescue(clock.now(), ["dead"])

    assert transition.job.id == lost.id
    assert transition.job.status == JobStatus.PENDING
    assert "worker lost" in (stored(storage, lost.id).error or "")
    assert storage.executions(lost.id)[0].status == "lost"
    record = stored(storage, kept.id)
    assert record.status == JobStatus.RUNNING
    assert record.token == kept_token
    assert [w.id for w in storage.list_workers()] == ["alive"]
    stopped = {w.id: w for w in storage.list_workers(since=start)}
    assert stopped["dead"].stopped_at is not None
    assert stopped["alive"].stopped_at is None


def test_rescue_does_not_touch_a_live_lease(storage, clock, make_job):
    job = make_job()
    storage.insert([job], clock.now())
    claim_one(storage, clock.now(), job.id)
    before = stored(storage, job.id)
    executions = storage.executions(job.id)
    clock.advance(LEASE - 1)

    assert storage.rescue(clock.now()) == []
    assert storage.rescue(clock.now(), ["some-other-worker"]) == []

    assert storage.get(job.id) == before
    assert storage.executions(job.id) == executions


def test_late_report_of_a_rescued_attempt_is_fenced(storage, clock, make_job):
    job = make_job()
    storage.insert([job], clock.now())
    token = claim_one(storage, clock.now(), job.id).token
    clock.advance(LEASE + 1)
    storage.rescue(clock.now())
    before = stored(storage, job.id)

    late = Outcome(job_id=job.id, token=token, status="completed", result="1")
    assert storage.finish([late], clock.now()) == [None]
    assert storage.get(job.id) == before


def test_rescue_waits_until_the_lease_has_expired_before_now(storage, clock, make_job):
    job = make_job()
    storage.insert([job], clock.now())
    claimed = claim_one(storage, clock.now(), job.id)
    assert claimed.lease_expires_at is not None

    # At the very instant the lease ends it has not yet expired before `now`.
    assert storage.rescue(claimed.lease_expires_at) == []
    assert stored(storage, job.id).status == JobStatus.RUNNING
    [transition] = storage.rescue(claimed.lease_expires_at + seconds(0.001))
    assert transition.job.id == job.id
