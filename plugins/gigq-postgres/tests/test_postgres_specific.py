"""What is particular to PostgreSQL: the schema namespace, LISTEN/NOTIFY wake-ups, lost
connections, fork safety, concurrent submitters of one unique key, read-only use."""

from __future__ import annotations

import os
import threading
import time
import uuid

import psycopg
import pytest

from _pg import make_pm, with_schema
from gigq_core.errors import ReadOnlyError
from gigq_core.plugins import open_storage
from gigq_core.queue import JobQueue
from gigq_core.records import JobFilter, JobStatus, Outcome
from gigq_postgres._connection import SqlConnection
from gigq_sql.lifecycle import finish_outcomes
from gigq_sql.postgresql import POSTGRES
from tests.contract._factory import LEASE, job_record


def terminate(server: str, application: str) -> int:
    """End every server session of `application`, as a server restart would; returns how
    many there were."""
    with psycopg.connect(server, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = %s AND pid <> pg_backend_pid()",
            (application,),
        ).fetchall()
    return len(rows)


def test_tables_live_in_the_configured_schema_only(pg_server, pg_url, pg_schema, storage, clock):
    job = job_record(clock.now())
    storage.insert([job], clock.now())

    with psycopg.connect(pg_server) as conn:
        schemas = conn.execute(
            "SELECT DISTINCT schemaname FROM pg_tables WHERE tablename = 'gigq_meta'"
            " AND schemaname = %s",
            (pg_schema,),
        ).fetchall()
        count = conn.execute(f'SELECT count(*) FROM "{pg_schema}".jobs').fetchone()
    assert schemas == [(pg_schema,)]
    assert count == (1,)


def test_two_schemas_are_two_separate_stores(pg_server, pg_url, storage, clock):
    other_schema = f"gigq_other_{uuid.uuid4().hex[:8]}"
    other = open_storage(with_schema(pg_server, other_schema), None, pm=make_pm())
    try:
        storage.insert([job_record(clock.now())], clock.now())

        assert other.list_jobs(JobFilter()) == []
        assert other.claim("w", 5, clock.now(), LEASE) == []
    finally:
        other.close()
        with psycopg.connect(pg_server, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{other_schema}" CASCADE')


def test_a_notify_from_a_plain_sql_session_wakes_a_waiting_storage(pg_server, storage):
    channel = storage._db.channel
    storage.wait_for_work(0.01)  # the LISTEN connection is open from here on
    started = time.monotonic()

    def poke():
        time.sleep(0.2)
        with psycopg.connect(pg_server, autocommit=True) as conn:
            conn.execute("SELECT pg_notify(%s, '')", (channel,))

    thread = threading.Thread(target=poke)
    thread.start()
    try:
        assert storage.wait_for_work(10.0) is True
    finally:
        thread.join()
    assert time.monotonic() - started < 5.0


def test_a_submit_wakes_a_waiter_at_once_not_after_its_timeout(open_target, clock):
    waiting, submitting = open_target(), open_target()
    waiting.wait_for_work(0.01)
    timer = threading.Timer(0.2, lambda: submitting.insert([job_record(clock.now())], clock.now()))
    started = time.monotonic()
    timer.start()
    try:
        woke = waiting.wait_for_work(30.0)
    finally:
        timer.join()

    assert woke is True
    assert time.monotonic() - started < 5.0


def test_other_threads_waiting_on_one_storage_all_wake(open_target, clock):
    waiting, submitting = open_target(), open_target()
    results: list[bool] = []

    def wait() -> None:
        results.append(waiting.wait_for_work(20.0))

    threads = [threading.Thread(target=wait) for _ in range(3)]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    submitting.insert([job_record(clock.now())], clock.now())
    for thread in threads:
        thread.join(timeout=25)

    assert results == [True, True, True]


def test_lost_connections_are_retried_and_lose_nothing(pg_server, pg_url, clock):
    application = f"gigq-test-{uuid.uuid4().hex[:8]}"
    store = open_storage(pg_url, {"application_name": application}, pm=make_pm())
    try:
        store.wait_for_work(0.01)
        assert terminate(pg_server, application) >= 1

        second = job_record(clock.now())
        assert store.insert([second], clock.now()) == [second.id]
        [claimed] = store.claim("w1", 1, clock.now(), LEASE)
        assert terminate(pg_server, application) >= 1
        [transition] = store.finish(
            [Outcome(job_id=claimed.id, token=claimed.token, status="completed", result="1")],
            clock.now(),
        )
        assert transition is not None and transition.job.status is JobStatus.COMPLETED
        # The LISTEN connection was ended too: it is reopened, reporting a (spurious) wake.
        assert store.wait_for_work(1.0) is True
        assert store.count(JobFilter()) == {"completed": 1}, "nothing lost, nothing twice"
    finally:
        store.close()


def test_a_finish_retried_after_an_unacknowledged_commit_is_applied_once(storage, clock):
    job = job_record(clock.now())
    storage.insert([job], clock.now())
    [claimed] = storage.claim("w1", 1, clock.now(), LEASE)
    outcome = Outcome(job_id=job.id, token=claimed.token, status="completed", result="7")
    [first] = storage.finish([outcome], clock.now())
    assert first is not None

    # What the retry of the same transaction sees: the first try committed.
    replay = storage._db.run(
        lambda conn, _: finish_outcomes(SqlConnection(conn), POSTGRES, [outcome], clock.now(), 1)
    )
    fresh = storage._db.run(
        lambda conn, _: finish_outcomes(SqlConnection(conn), POSTGRES, [outcome], clock.now(), 0)
    )

    assert replay[0] is not None and replay[0].job.status is JobStatus.COMPLETED
    assert fresh == [None]
    [execution] = storage.executions(job.id)
    assert execution.status == "completed"


def test_an_insert_retried_after_an_unacknowledged_commit_returns_the_same_ids(storage, clock):
    from gigq_sql.insert import insert_jobs

    jobs = [job_record(clock.now()), job_record(clock.now(), unique_key="k")]
    ids = storage.insert(jobs, clock.now())
    twin = job_record(clock.now(), unique_key="k")

    again = storage._db.run(
        lambda conn, _: insert_jobs(SqlConnection(conn), POSTGRES, [*jobs, twin], clock.now(), 1)
    )

    assert again == [*ids, ids[1]]
    assert len(storage.list_jobs(JobFilter())) == 2


def test_concurrent_submitters_of_one_unique_key_store_one_job(open_target, clock):
    stores = [open_target() for _ in range(4)]
    barrier = threading.Barrier(len(stores))
    results: list[str] = []
    errors: list[BaseException] = []

    def submit(store) -> None:
        barrier.wait()
        try:
            for _ in range(5):
                results.extend(
                    store.insert([job_record(clock.now(), unique_key="once")], clock.now())
                )
        except BaseException as err:  # reported below, in the test's thread
            errors.append(err)

    threads = [threading.Thread(target=submit, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert len(set(results)) == 1
    assert len(stores[0].list_jobs(JobFilter())) == 1


def test_a_forked_child_opens_its_own_connections(storage, clock):
    job = job_record(clock.now())
    storage.insert([job], clock.now())
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report through the pipe, never return into pytest
        code = 1
        try:
            found = storage.get(job.id)
            storage.insert([job_record(clock.now())], clock.now())
            code = 0 if found is not None else 2
        finally:
            os.write(write, bytes([code]))
            os._exit(0)
    os.close(write)
    try:
        reply = os.read(read, 1)
    finally:
        os.close(read)
        os.waitpid(pid, 0)

    assert reply == b"\x00"
    # The parent's connections survived the child: the child never touched them.
    assert storage.get(job.id) is not None
    assert len(storage.list_jobs(JobFilter())) == 2


def test_read_only_reads_and_refuses_writes(pg_url, storage, clock):
    job = job_record(clock.now())
    storage.insert([job], clock.now())
    reader = open_storage(pg_url, {"read_only": True}, pm=make_pm())
    try:
        assert reader.get(job.id) is not None
        with pytest.raises(ReadOnlyError):
            reader.insert([job_record(clock.now())], clock.now())
    finally:
        reader.close()


def test_durability_normal_turns_synchronous_commit_off(pg_url):
    store = open_storage(pg_url, {"durability": "normal"}, pm=make_pm())
    try:
        checks = {c["check"]: c for c in store.diagnose()}
    finally:
        store.close()
    assert checks["synchronous_commit"]["detail"] == "off"
    assert checks["schema"]["ok"]


@pytest.mark.parametrize("source", ["environment", "url"])
def test_durability_comes_through_gigq_s_settings_chain(pg_url, monkeypatch, source):
    for name in [name for name in os.environ if name.startswith("GIGQ_")]:
        monkeypatch.delenv(name)
    if source == "environment":
        monkeypatch.setenv("GIGQ_DURABILITY", "normal")
    else:
        pg_url += "&durability=normal" if "?" in pg_url else "?durability=normal"
    with JobQueue(pg_url, plugin_manager=make_pm()) as queue:
        checks = {c["check"]: c for c in queue.storage.diagnose()}
        assert queue.settings.options["durability"] == "normal"
    assert checks["synchronous_commit"]["detail"] == "off"
