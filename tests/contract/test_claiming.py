"""Contract of `Storage.claim`: which jobs are ready, in what order, and what a claim sets."""

from __future__ import annotations

import threading

from gigq_core.records import JobFilter, JobStatus, Outcome
from tests.contract._factory import BOOM, LEASE, complete, ids, seconds, stored


def test_claims_highest_priority_first_then_submit_order(storage, clock, make_job):
    jobs = [make_job(priority=p) for p in (0, 5, 0, 5, -1, 10)]
    storage.insert(jobs[:3], clock.now())
    clock.advance(1)
    storage.insert(jobs[3:], clock.now())

    claimed = storage.claim("w1", 10, clock.now(), LEASE)

    by_priority = [5, 1, 3, 0, 2, 4]
    assert ids(claimed) == [jobs[i].id for i in by_priority]


def test_claims_one_at_a_time_in_the_same_order(storage, clock, make_job):
    jobs = [make_job(priority=p) for p in (1, 3, 2, 3)]
    storage.insert(jobs, clock.now())

    order = []
    for _ in range(4):
        [job] = storage.claim("w1", 1, clock.now(), LEASE)
        order.append(job.id)

    assert order == [jobs[1].id, jobs[3].id, jobs[2].id, jobs[0].id]
    assert storage.claim("w1", 1, clock.now(), LEASE) == []


def test_submit_order_is_the_order_given_not_run_at_or_created_at(storage, clock, make_job):
    now = clock.now()
    first = make_job(run_at=now - seconds(1), created_at=now - seconds(5))
    second = make_job(run_at=now - seconds(100), created_at=now - seconds(500))
    storage.insert([first, second], now)

    assert ids(storage.claim("w1", 2, now, LEASE)) == [first.id, second.id]


def test_job_is_not_claimed_before_its_run_at(storage, clock, make_job):
    job = make_job(run_at=clock.now() + seconds(60))
    storage.insert([job], clock.now())

    assert storage.claim("w1", 5, clock.now(), LEASE) == []
    clock.advance(59)
    assert storage.claim("w1", 5, clock.now(), LEASE) == []
    clock.advance(1)
    assert ids(storage.claim("w1", 5, clock.now(), LEASE)) == [job.id]


def test_claims_no_more_than_the_limit(storage, clock, make_job):
    jobs = [make_job() for _ in range(5)]
    storage.insert(jobs, clock.now())

    sizes = [len(storage.claim("w1", 2, clock.now(), LEASE)) for _ in range(4)]

    assert sizes == [2, 2, 1, 0]


def test_dependencies_block_until_all_completed(storage, clock, make_job):
    a = make_job(priority=1)
    b = make_job()
    c = make_job(priority=100, dependencies=(a.id, b.id))
    storage.insert([a, b, c], clock.now())

    assert ids(storage.claim("w1", 10, clock.now(), LEASE)) == [a.id, b.id]
    storage.finish(
        [Outcome(job_id=a.id, token=stored(storage, a.id).token, status="completed")], clock.now()
    )
    assert storage.claim("w1", 10, clock.now(), LEASE) == []

    storage.finish(
        [Outcome(job_id=b.id, token=stored(storage, b.id).token, status="completed")], clock.now()
    )
    assert ids(storage.claim("w1", 10, clock.now(), LEASE)) == [c.id]


def test_dependency_waiting_for_a_retry_still_blocks(storage, clock, make_job):
    a = make_job()
    b = make_job(dependencies=(a.id,))
    storage.insert([a, b], clock.now())
    [claimed] = storage.claim("w1", 10, clock.now(), LEASE)
    retry_at = clock.now() + seconds(10)
    storage.finish(
        [Outcome(job_id=a.id, token=claimed.token, status="failed", error=BOOM, retry_at=retry_at)],
        clock.now(),
    )
    clock.advance(10)

    assert ids(storage.claim("w1", 10, clock.now(), LEASE)) == [a.id]
    assert storage.claim("w1", 10, clock.now(), LEASE) == []


def test_queues_filter_what_is_claimed(storage, clock, make_job):
    a = make_job(queue="a")
    b = make_job(queue="b")
    c = make_job(queue="c")
    storage.insert([a, b, c], clock.now())

    assert ids(storage.claim("w1", 10, clock.now(), LEASE, queues=["a", "c"])) == [a.id, c.id]
    assert storage.claim("w1", 10, clock.now(), LEASE, queues=["a", "zzz"]) == []
    assert ids(storage.claim("w1", 10, clock.now(), LEASE, queues=None)) == [b.id]


def test_paused_queue_keeps_its_jobs_and_none_is_claimed(storage, clock, make_job):
    a = make_job(queue="a")
    b = make_job(queue="b")
    storage.insert([a, b], clock.now())

    storage.set_queue_paused("a", True)
    assert storage.paused_queues() == frozenset({"a"})
    assert ids(storage.claim("w1", 10, clock.now(), LEASE)) == [b.id]
    assert storage.claim("w1", 10, clock.now(), LEASE, queues=["a"]) == []
    assert stored(storage, a.id).status == JobStatus.PENDING

    storage.set_queue_paused("a", False)
    assert storage.paused_queues() == frozenset()
    assert ids(storage.claim("w1", 10, clock.now(), LEASE)) == [a.id]


def test_claimed_job_is_running_with_attempt_token_lease_and_worker(storage, clock, make_job):
    job = make_job()
    storage.insert([job], clock.now())
    clock.advance(5)
    now = clock.now()

    [claimed] = storage.claim("w7", 1, now, 45.0)

    for record in (claimed, stored(storage, job.id)):
        assert record.id == job.id
        assert record.status == JobStatus.RUNNING
        assert record.attempts == 1
        assert record.token
        assert record.worker_id == "w7"
        assert record.started_at == now
        assert record.lease_expires_at == now + seconds(45)
    assert stored(storage, job.id).token == claimed.token


def test_claim_gets_a_new_execution_record(storage, clock, make_job):
    job = make_job()
    storage.insert([job], clock.now())
    now = clock.now()

    [claimed] = storage.claim("w7", 1, now, LEASE)

    [execution] = storage.executions(job.id)
    assert execution.job_id == job.id
    assert execution.status == "running"
    assert execution.attempt == 1
    assert execution.worker_id == "w7"
    assert execution.token == claimed.token
    assert execution.started_at == now
    assert execution.completed_at is None


def test_each_claim_has_a_fresh_token_and_counts_the_attempt(storage, clock, make_job):
    job = make_job()
    storage.insert([job], clock.now())
    [first] = storage.claim("w1", 1, clock.now(), LEASE)
    storage.finish(
        [
            Outcome(
                job_id=job.id, token=first.token, status="failed", error=BOOM, retry_at=clock.now()
            )
        ],
        clock.now(),
    )

    [second] = storage.claim("w2", 1, clock.now(), LEASE)

    assert second.attempts == 2
    assert second.token
    assert second.token != first.token
    executions = storage.executions(job.id)
    assert [e.attempt for e in executions] == [1, 2]
    assert executions[1].token == second.token
    assert executions[1].worker_id == "w2"


def test_running_or_finished_job_is_not_claimed_again(storage, clock, make_job):
    running = make_job()
    done = make_job(queue="done")
    storage.insert([running, done], clock.now())
    complete(storage, clock.now(), done.id)
    storage.claim("w1", 10, clock.now(), LEASE)

    assert storage.claim("w1", 10, clock.now(), LEASE) == []
    assert storage.claim("w2", 10, clock.now(), LEASE) == []
    clock.advance(LEASE - 1)
    assert storage.claim("w2", 10, clock.now(), LEASE) == []


def test_no_job_is_returned_to_two_threads(storage, clock, make_job):
    jobs = [make_job(priority=i % 3) for i in range(60)]
    storage.insert(jobs, clock.now())
    now = clock.now()
    workers = 8
    start = threading.Barrier(workers)
    claimed: dict[str, list[str]] = {f"w{i}": [] for i in range(workers)}
    errors: list[BaseException] = []

    def work(worker_id: str) -> None:
        try:
            start.wait(timeout=10)
            for _ in range(len(jobs)):
                got = storage.claim(worker_id, 3, now, LEASE)
                if not got:
                    return
                claimed[worker_id].extend(ids(got))
        except BaseException as err:  # reported by the test below, in its own thread
            errors.append(err)

    threads = [threading.Thread(target=work, args=(w,), daemon=True) for w in claimed]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    every = [job_id for got in claimed.values() for job_id in got]
    assert sorted(every) == sorted(ids(jobs))
    for worker_id, got in claimed.items():
        for job_id in got:
            record = stored(storage, job_id)
            assert record.worker_id == worker_id
            assert record.attempts == 1
            assert len(storage.executions(job_id)) == 1
    assert storage.count(JobFilter()).get("running") == len(jobs)


def test_limit_zero_claims_nothing(storage, clock, make_job):
    job = make_job()
    storage.insert([job], clock.now())

    assert storage.claim("w1", 0, clock.now(), LEASE) == []
    assert stored(storage, job.id).status == JobStatus.PENDING


def test_empty_queues_claims_nothing(storage, clock, make_job):
    job = make_job()
    storage.insert([job], clock.now())

    assert storage.claim("w1", 5, clock.now(), LEASE, queues=[]) == []
    assert stored(storage, job.id).status == JobStatus.PENDING


def test_no_job_is_returned_to_two_storage_objects_on_one_store(open_target, clock, make_job):
    # Several objects on one store stand for several worker processes.
    stores = [open_target() for _ in range(4)]
    jobs = [make_job(priority=i % 2) for i in range(40)]
    stores[0].insert(jobs, clock.now())
    now = clock.now()
    workers = 8
    start = threading.Barrier(workers)
    claimed: dict[str, list[str]] = {f"w{i}": [] for i in range(workers)}
    errors: list[BaseException] = []

    def work(index: int, worker_id: str) -> None:
        store = stores[index % len(stores)]
        try:
            start.wait(timeout=10)
            for _ in range(len(jobs)):
                got = store.claim(worker_id, 2, now, LEASE)
                if not got:
                    return
                claimed[worker_id].extend(ids(got))
        except BaseException as err:  # reported by the test below, in its own thread
            errors.append(err)

    threads = [
        threading.Thread(target=work, args=(i, w), daemon=True) for i, w in enumerate(claimed)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    every = [job_id for got in claimed.values() for job_id in got]
    assert sorted(every) == sorted(ids(jobs))
    for job_id in every:
        assert len(stores[0].executions(job_id)) == 1


def test_start_is_never_before_a_dependency_completed(storage, clock, make_job):
    # A worker reads its clock, then waits for the lock while the parent completes (later
    # by the clock): the child's start is the parent's completion, not the earlier reading.
    parent = make_job()
    child = make_job(dependencies=(parent.id,))
    storage.insert([parent, child], clock.now())
    read_before = clock.now()
    clock.advance(5)
    complete(storage, clock.now(), parent.id)
    finished = stored(storage, parent.id).completed_at

    [claimed] = storage.claim("w2", 1, read_before, LEASE)

    assert claimed.id == child.id
    assert claimed.started_at == finished
    assert stored(storage, child.id).started_at == finished
    [execution] = [e for e in storage.executions(child.id)]
    assert execution.started_at == finished
