"""Contract of the read side: get, list, count, find by prefix, next due, executions,
workflows, workers and the key-value store."""

from __future__ import annotations

import pytest

from gigq_core.ports import Storage
from gigq_core.records import JobFilter, JobStatus, Outcome, WorkerInfo
from tests.contract._factory import BOOM, claim_one, complete, ids, seconds, stored

UNKNOWN = "00000000-0000-4000-8000-000000000000"


def nonzero(counts):
    return {status: n for status, n in counts.items() if n}


def test_storage_conforms_to_the_port(storage):
    assert isinstance(storage, Storage)
    assert isinstance(storage.url, str)
    assert storage.url


# -- get -----------------------------------------------------------------------------------


def test_get_unknown_id_is_none(storage):
    assert storage.get(UNKNOWN) is None


def test_get_many_returns_the_jobs_that_exist_by_id(storage, clock, make_job):
    a = make_job()
    b = make_job()
    c = make_job()
    storage.insert([a, b, c], clock.now())

    got = storage.get_many([c.id, UNKNOWN, a.id])

    assert set(got) == {a.id, c.id}
    assert got[a.id] == stored(storage, a.id)
    assert got[c.id] == stored(storage, c.id)
    assert storage.get_many([]) == {}


# -- list_jobs -----------------------------------------------------------------------------


@pytest.fixture
def three(storage, clock, make_job):
    """Three jobs submitted one after another, the middle one with the highest priority."""
    jobs = [make_job(priority=p) for p in (0, 9, 1)]
    for job in jobs:
        storage.insert([job], clock.now())
        clock.advance(1)
    return jobs


def test_list_jobs_newest_first_by_default(storage, three):
    assert ids(storage.list_jobs(JobFilter())) == ids(reversed(three))
    assert ids(storage.list_jobs(JobFilter(), order="newest")) == ids(reversed(three))


def test_list_jobs_oldest_first(storage, three):
    assert ids(storage.list_jobs(JobFilter(), order="oldest")) == ids(three)


def test_list_jobs_in_claim_order(storage, three):
    a, b, c = three
    assert ids(storage.list_jobs(JobFilter(), order="priority")) == [b.id, c.id, a.id]


def test_list_jobs_newest_is_submit_order_not_created_at(storage, clock, make_job):
    first = make_job(created_at=clock.now() + seconds(1000))
    second = make_job(created_at=clock.now() - seconds(1000))
    storage.insert([first, second], clock.now())

    assert ids(storage.list_jobs(JobFilter())) == [second.id, first.id]


def test_list_jobs_limit_and_offset(storage, clock, make_job):
    jobs = [make_job() for _ in range(6)]
    storage.insert(jobs, clock.now())

    assert ids(storage.list_jobs(JobFilter(), limit=2, order="oldest")) == ids(jobs[:2])
    assert ids(storage.list_jobs(JobFilter(), limit=2, offset=3, order="oldest")) == ids(jobs[3:5])
    assert ids(storage.list_jobs(JobFilter(), limit=10, offset=4, order="oldest")) == ids(jobs[4:])
    assert storage.list_jobs(JobFilter(), limit=10, offset=6) == []
    assert ids(storage.list_jobs(JobFilter(), limit=1, offset=1)) == [jobs[4].id]


def test_list_jobs_default_limit_is_100(storage, clock, make_job):
    storage.insert([make_job() for _ in range(105)], clock.now())

    assert len(storage.list_jobs(JobFilter())) == 100


def test_list_jobs_filters_by_status(storage, clock, make_job):
    pending = make_job()
    running = make_job(queue="r")
    done = make_job(queue="d")
    failed = make_job(queue="f")
    storage.insert([pending, running, done, failed], clock.now())
    claim_one(storage, clock.now(), running.id)
    complete(storage, clock.now(), done.id)
    token = claim_one(storage, clock.now(), failed.id).token
    storage.finish(
        [Outcome(job_id=failed.id, token=token, status="failed", error=BOOM)], clock.now()
    )

    def listed(*statuses):
        return set(ids(storage.list_jobs(JobFilter(statuses=statuses))))

    assert listed(JobStatus.PENDING) == {pending.id}
    assert listed(JobStatus.RUNNING) == {running.id}
    assert listed(JobStatus.COMPLETED, JobStatus.FAILED) == {done.id, failed.id}
    assert listed(JobStatus.CANCELLED) == set()
    assert listed() == set()
    assert len(storage.list_jobs(JobFilter(statuses=None))) == 4


def test_list_jobs_filters_by_queue_name_and_workflow(storage, clock, make_job):
    a = make_job(queue="io", name="fetch", workflow_id="wf1", workflow_name="daily")
    b = make_job(queue="cpu", name="fetch")
    c = make_job(queue="io", name="parse", workflow_id="wf2", workflow_name="daily")
    storage.insert([a, b, c], clock.now())

    def listed(**where):
        return ids(storage.list_jobs(JobFilter(**where), order="oldest"))

    assert listed(queues=("io",)) == [a.id, c.id]
    assert listed(queues=("io", "cpu")) == [a.id, b.id, c.id]
    assert listed(queues=("other",)) == []
    assert listed(name="fetch") == [a.id, b.id]
    assert listed(name="fet") == []
    assert listed(workflow_id="wf2") == [c.id]
    assert listed(queues=("io",), name="fetch") == [a.id]
    assert listed(workflow_id="wf1", name="parse") == []


def test_list_jobs_filters_by_unique_key(storage, clock, make_job):
    held = make_job(unique_key="report")
    other = make_job(unique_key="other")
    plain = make_job()
    storage.insert([held, other, plain], clock.now())

    def listed(**where):
        return ids(storage.list_jobs(JobFilter(**where), order="oldest"))

    assert listed(unique_key="report") == [held.id]
    assert listed(unique_key="rep") == []
    assert listed(unique_key="report", statuses=(JobStatus.RUNNING,)) == []
    assert listed(unique_key="no\x00key") == []
    assert nonzero(storage.count(JobFilter(unique_key="other"))) == {"pending": 1}


def test_list_jobs_filters_by_updated_before(storage, clock, make_job):
    old = make_job()
    storage.insert([old], clock.now())
    clock.advance(10)
    new = make_job()
    storage.insert([new], clock.now())

    def listed(before):
        return ids(storage.list_jobs(JobFilter(updated_before=before)))

    assert listed(clock.now() - seconds(5)) == [old.id]
    assert listed(clock.now() + seconds(1)) == [new.id, old.id]
    assert listed(clock.now() - seconds(10)) == []


# -- count, find_ids, next_due ------------------------------------------------------------


def test_count_per_status_value(storage, clock, make_job):
    jobs = [make_job(queue=q) for q in ("a", "a", "b", "c")]
    storage.insert(jobs, clock.now())
    claim_one(storage, clock.now(), jobs[2].id)
    complete(storage, clock.now(), jobs[3].id)

    assert nonzero(storage.count(JobFilter())) == {"pending": 2, "running": 1, "completed": 1}
    assert nonzero(storage.count(JobFilter(queues=("a", "b")))) == {"pending": 2, "running": 1}
    assert nonzero(storage.count(JobFilter(statuses=(JobStatus.COMPLETED,)))) == {"completed": 1}
    assert nonzero(storage.count(JobFilter(queues=("zzz",)))) == {}


def test_find_ids_by_prefix_sorted_and_limited(storage, clock, make_job):
    wanted = [
        "abc30000-0000-4000-8000-000000000000",
        "abc10000-0000-4000-8000-000000000000",
        "abc20000-0000-4000-8000-000000000000",
    ]
    other = "abd10000-0000-4000-8000-000000000000"
    storage.insert([make_job(id=job_id) for job_id in [*wanted, other]], clock.now())

    assert storage.find_ids("abc", limit=10) == sorted(wanted)
    assert storage.find_ids("abc") == sorted(wanted)[:2]
    assert storage.find_ids("abc", limit=1) == sorted(wanted)[:1]
    assert storage.find_ids("ab", limit=10) == sorted([*wanted, other])
    assert storage.find_ids(other, limit=10) == [other]
    assert storage.find_ids("abe", limit=10) == []


def test_find_ids_treats_the_prefix_literally(storage, clock, make_job):
    storage.insert([make_job(id="abc10000-0000-4000-8000-000000000000")], clock.now())

    assert storage.find_ids("%", limit=10) == []
    assert storage.find_ids("_bc", limit=10) == []


def test_next_due_is_none_without_pending_jobs(storage, clock, make_job):
    assert storage.next_due(clock.now()) is None
    job = make_job()
    storage.insert([job], clock.now())
    complete(storage, clock.now(), job.id)

    assert storage.next_due(clock.now()) is None


def test_next_due_is_the_earliest_run_at_of_a_pending_job(storage, clock, make_job):
    now = clock.now()
    blocker = make_job(run_at=now + seconds(50), queue="x")
    later = make_job(run_at=now + seconds(30))
    sooner = make_job(run_at=now + seconds(20), queue="y")
    blocked = make_job(run_at=now + seconds(5), dependencies=(blocker.id,))
    storage.insert([blocker, later, sooner, blocked], now)

    assert storage.next_due(now) == now + seconds(20)
    assert storage.next_due(now, queues=["default"]) == now + seconds(30)
    assert storage.next_due(now, queues=["x", "default"]) == now + seconds(30)
    assert storage.next_due(now, queues=["nothing"]) is None


def test_next_due_ignores_running_jobs(storage, clock, make_job):
    now = clock.now()
    running = make_job(run_at=now)
    later = make_job(run_at=now + seconds(40), queue="other")
    storage.insert([running, later], now)
    claim_one(storage, now, running.id)

    assert storage.next_due(now) == now + seconds(40)


def test_next_due_counts_a_job_whose_dependencies_completed(storage, clock, make_job):
    now = clock.now()
    parent = make_job(run_at=now)
    child = make_job(run_at=now + seconds(7), dependencies=(parent.id,))
    storage.insert([parent, child], now)
    complete(storage, now, parent.id)

    assert storage.next_due(now) == now + seconds(7)


# -- executions ----------------------------------------------------------------------------


def test_executions_unknown_job_is_empty(storage):
    assert storage.executions(UNKNOWN) == []


def test_executions_oldest_first(storage, clock, make_job):
    job = make_job()
    storage.insert([job], clock.now())
    first = claim_one(storage, clock.now(), job.id, worker_id="w1")
    storage.finish(
        [
            Outcome(
                job_id=job.id, token=first.token, status="failed", error=BOOM, retry_at=clock.now()
            )
        ],
        clock.now(),
    )
    clock.advance(1)
    second = claim_one(storage, clock.now(), job.id, worker_id="w2")

    executions = storage.executions(job.id)

    assert [(e.attempt, e.worker_id, e.token, e.status) for e in executions] == [
        (1, "w1", first.token, "failed"),
        (2, "w2", second.token, "running"),
    ]
    assert executions[0].id != executions[1].id
    assert all(e.job_id == job.id for e in executions)


# -- workflows -----------------------------------------------------------------------------


def test_list_workflows_newest_first_with_counts(storage, clock, make_job):
    old = [make_job(workflow_id="wf-old", workflow_name="nightly", queue=q) for q in ("a", "b")]
    storage.insert([*old, make_job()], clock.now())
    complete(storage, clock.now(), old[0].id)
    clock.advance(10)
    new = [make_job(workflow_id="wf-new", workflow_name="hourly") for _ in range(3)]
    storage.insert(new, clock.now())

    workflows = storage.list_workflows()

    assert [(w.id, w.name) for w in workflows] == [("wf-new", "hourly"), ("wf-old", "nightly")]
    assert nonzero(workflows[0].counts) == {"pending": 3}
    assert nonzero(workflows[1].counts) == {"completed": 1, "pending": 1}
    assert [w.id for w in storage.list_workflows(limit=1)] == ["wf-new"]


def test_list_workflows_empty(storage, clock, make_job):
    storage.insert([make_job()], clock.now())

    assert storage.list_workflows() == []


# -- workers -------------------------------------------------------------------------------


def info(clock, worker_id, **fields):
    now = clock.now()
    return WorkerInfo(
        id=worker_id, host="box", pid=42, started_at=now, last_heartbeat=now, **fields
    )


def test_register_and_list_workers(storage, clock):
    storage.register_worker(info(clock, "w1", queues=("a", "b"), concurrency=4))
    storage.register_worker(info(clock, "w2"))

    workers = {w.id: w for w in storage.list_workers()}

    assert set(workers) == {"w1", "w2"}
    w1 = workers["w1"]
    assert (w1.host, w1.pid, w1.queues, w1.concurrency) == ("box", 42, ("a", "b"), 4)
    assert w1.started_at == clock.now()
    assert w1.stopped_at is None
    assert w1.current_jobs == ()


def test_register_worker_replaces_the_record_with_the_same_id(storage, clock):
    storage.register_worker(info(clock, "w1"))
    clock.advance(5)
    storage.register_worker(
        WorkerInfo(id="w1", host="other", pid=7, started_at=clock.now(), last_heartbeat=clock.now())
    )

    [worker] = storage.list_workers()
    assert (worker.id, worker.host, worker.pid) == ("w1", "other", 7)
    assert worker.started_at == clock.now()


def test_list_workers_with_their_current_jobs(storage, clock, make_job):
    storage.register_worker(info(clock, "w1"))
    storage.register_worker(info(clock, "w2"))
    jobs = [make_job(queue=q) for q in ("a", "b", "c")]
    storage.insert(jobs, clock.now())
    first = claim_one(storage, clock.now(), jobs[0].id, worker_id="w1")
    claim_one(storage, clock.now(), jobs[1].id, worker_id="w1")
    claim_one(storage, clock.now(), jobs[2].id, worker_id="w2")
    storage.finish([Outcome(job_id=jobs[0].id, token=first.token, status="completed")], clock.now())

    workers = {w.id: w for w in storage.list_workers()}

    assert set(workers["w1"].current_jobs) == {jobs[1].id}
    assert set(workers["w2"].current_jobs) == {jobs[2].id}


def test_deregistered_worker_is_listed_only_since_before_it_stopped(storage, clock):
    start = clock.now()
    storage.register_worker(info(clock, "w1"))
    storage.register_worker(info(clock, "w2"))
    clock.advance(5)
    stopped_at = clock.now()

    storage.deregister_worker("w1", stopped_at)

    assert [w.id for w in storage.list_workers()] == ["w2"]
    listed = {w.id: w for w in storage.list_workers(since=start)}
    assert set(listed) == {"w1", "w2"}
    assert listed["w1"].stopped_at == stopped_at
    assert listed["w2"].stopped_at is None
    assert [w.id for w in storage.list_workers(since=stopped_at + seconds(1))] == ["w2"]


def test_deregister_unknown_worker_is_not_an_error(storage, clock):
    storage.deregister_worker("nobody", clock.now())

    assert storage.list_workers() == []


def test_worker_jobs_do_not_leak_between_workers(storage, clock, make_job):
    storage.register_worker(info(clock, "w1"))
    assert storage.list_workers()[0].current_jobs == ()
    job = make_job()
    storage.insert([job], clock.now())
    claim_one(storage, clock.now(), job.id, worker_id="w9")

    assert storage.list_workers()[0].current_jobs == ()


# -- paused queues -------------------------------------------------------------------------


def test_paused_queues(storage):
    assert storage.paused_queues() == frozenset()
    storage.set_queue_paused("a", True)
    storage.set_queue_paused("b", True)
    storage.set_queue_paused("a", True)
    assert storage.paused_queues() == frozenset({"a", "b"})
    storage.set_queue_paused("a", False)
    storage.set_queue_paused("never-paused", False)
    assert storage.paused_queues() == frozenset({"b"})


# -- key-value store -----------------------------------------------------------------------


def test_kv_get_set_and_delete(storage):
    assert storage.kv_get("cron", "nightly") is None
    storage.kv_set("cron", "nightly", "0 3 * * *")
    assert storage.kv_get("cron", "nightly") == "0 3 * * *"
    storage.kv_set("cron", "nightly", "0 4 * * *")
    assert storage.kv_get("cron", "nightly") == "0 4 * * *"
    storage.kv_set("cron", "nightly", None)
    assert storage.kv_get("cron", "nightly") is None
    storage.kv_set("cron", "never-set", None)
    assert storage.kv_get("cron", "never-set") is None


def test_kv_items_of_a_namespace(storage):
    assert storage.kv_items("cron") == {}
    storage.kv_set("cron", "a", "1")
    storage.kv_set("cron", "b", "2")
    storage.kv_set("cron", "c", "3")
    storage.kv_set("cron", "c", None)

    assert storage.kv_items("cron") == {"a": "1", "b": "2"}


def test_kv_namespaces_are_isolated(storage):
    storage.kv_set("one", "key", "from one")
    storage.kv_set("two", "key", "from two")
    storage.kv_set("two", "only-two", "x")

    assert storage.kv_get("one", "key") == "from one"
    assert storage.kv_get("two", "key") == "from two"
    assert storage.kv_get("one", "only-two") is None
    assert storage.kv_items("one") == {"key": "from one"}
    storage.kv_set("one", "key", None)
    assert storage.kv_get("two", "key") == "from two"
