"""Lifecycle hooks: exact order per scenario, isolation of a raising plugin, tracing."""

from __future__ import annotations

import logging

import pytest

from gigq import JobQueue
from gigq_core import Job, Worker, hookimpl
from gigq_core.plugins import Hooks, make_plugin_manager
from gigq_core.records import ErrorInfo
from gigq_core.testing import RecordingPlugin
from tests import jobs


def test_hooks_of_a_success(queue, worker, rec):
    job_id = queue.submit(Job("add", jobs.add, params={"a": 1, "b": 2}))
    worker.process_one()

    assert rec.calls == [
        ("gigq_job_submitted", job_id),
        ("gigq_job_started", job_id),
        ("gigq_job_succeeded", job_id),
    ]
    started = rec.kwargs[1][1]
    assert started["attempt"] == 1
    assert started["worker_id"] == "w1"
    assert started["job"].status.value == "running"
    succeeded = rec.kwargs[2][1]
    assert succeeded["result"] == 3
    assert succeeded["duration"] >= 0
    assert succeeded["job"].status.value == "completed"


def test_hooks_of_a_retry_then_success(queue, worker, rec):
    job_id = queue.submit(Job("f", jobs.fail_until, params={"attempts": 1}, retry_delay=4))
    worker.process_one()
    queue.clock.advance(4)
    worker.process_one()

    assert rec.calls == [
        ("gigq_job_submitted", job_id),
        ("gigq_job_started", job_id),
        ("gigq_job_failed", job_id),
        ("gigq_job_retrying", job_id),
        ("gigq_job_started", job_id),
        ("gigq_job_succeeded", job_id),
    ]
    failed, retrying = rec.kwargs[2][1], rec.kwargs[3][1]
    assert failed["final"] is False
    assert isinstance(failed["error"], ErrorInfo)
    assert failed["error"].type == "ValueError"
    assert "attempt 1 fails" in failed["error"].message
    assert retrying["delay"] == 4
    assert retrying["error"].type == "ValueError"
    assert rec.kwargs[4][1]["attempt"] == 2


def test_hooks_of_a_final_failure(queue, worker, rec):
    job_id = queue.submit(Job("f", jobs.fail, max_attempts=1))
    worker.process_one()

    assert rec.calls == [
        ("gigq_job_submitted", job_id),
        ("gigq_job_started", job_id),
        ("gigq_job_failed", job_id),
    ]
    failed = rec.kwargs[2][1]
    assert failed["final"] is True
    assert failed["job"].status.value == "failed"


def test_hooks_of_an_abort(queue, worker, rec):
    job_id = queue.submit(Job("a", jobs.abort, retry_delay=0))
    worker.process_one()

    assert rec.names() == ["gigq_job_submitted", "gigq_job_started", "gigq_job_failed"]
    assert rec.kwargs[2][1]["final"] is True
    assert rec.calls[-1] == ("gigq_job_failed", job_id)


def test_hooks_of_a_cancel(queue, rec):
    job_id = queue.submit(Job("n", jobs.noop))
    queue.cancel(job_id)

    assert rec.calls == [("gigq_job_submitted", job_id), ("gigq_job_cancelled", job_id)]
    assert rec.kwargs[1][1]["reason"] == "cancelled by user"


def test_submit_many_fires_submitted_in_the_order_given(queue, rec):
    # Ids that sort the other way round from the submit order.
    first = Job("first", jobs.noop, id="ffffffff-0000-4000-8000-000000000000")
    second = Job("second", jobs.noop, id="00000000-0000-4000-8000-000000000000")
    queue.submit_many([first, second])

    assert rec.calls == [("gigq_job_submitted", first.id), ("gigq_job_submitted", second.id)]


def test_hooks_of_a_cancel_with_a_cascade(queue, rec):
    parent = Job("p", jobs.noop, id="aaaaaaaa-0000-4000-8000-000000000000")
    child = Job("c", jobs.noop, dependencies=[parent], id="bbbbbbbb-0000-4000-8000-000000000000")
    queue.submit_many([parent, child])
    queue.cancel(parent.id)

    assert rec.calls == [
        ("gigq_job_submitted", parent.id),
        ("gigq_job_submitted", child.id),
        ("gigq_job_cancelled", parent.id),
        ("gigq_job_cancelled", child.id),
    ]
    assert parent.id in rec.kwargs[3][1]["reason"]


def test_cancel_of_a_finished_job_fires_nothing(queue, worker, rec):
    job_id = queue.submit(Job("n", jobs.noop))
    worker.process_one()
    count = len(rec.calls)

    queue.cancel(job_id)

    assert len(rec.calls) == count


def test_cancel_of_a_running_job_fires_nothing_until_it_ends(queue, rec):
    job_id = queue.submit(Job("n", jobs.noop))
    queue.storage.claim("elsewhere", 1, queue.clock.now(), 30)

    assert queue.cancel(job_id) is True

    assert rec.calls == [("gigq_job_submitted", job_id)]


def test_deduplicated_submit_fires_nothing(queue, rec):
    first = queue.submit(Job("a", jobs.noop, unique_key="k"))
    queue.submit(Job("b", jobs.noop, unique_key="k"))

    assert rec.calls == [("gigq_job_submitted", first)]


def test_worker_start_and_stop_hooks(pm, store, rec):
    from gigq_core.clock import SystemClock

    worker = Worker(f"memory://{store}", worker_id="wx", plugin_manager=pm, clock=SystemClock())

    class StopAtOnce:
        @hookimpl
        def gigq_worker_started(self, worker_id):
            worker.stop()

    pm.register(StopAtOnce(), name="stopper")
    worker.start()

    assert rec.calls == [("gigq_worker_started", "wx"), ("gigq_worker_stopped", "wx")]


class Raising:
    """A plugin whose every lifecycle hook raises."""

    @hookimpl
    def gigq_job_submitted(self, job):
        raise RuntimeError("submitted hook broke")

    @hookimpl
    def gigq_job_started(self, job):
        raise RuntimeError("started hook broke")

    @hookimpl
    def gigq_job_succeeded(self, job):
        raise RuntimeError("succeeded hook broke")

    @hookimpl
    def gigq_job_failed(self, job):
        raise RuntimeError("failed hook broke")


def test_a_raising_hook_is_logged_and_does_not_change_the_outcome(pm, queue, worker, caplog):
    pm.register(Raising(), name="raising")
    rec = RecordingPlugin()
    pm.register(rec, name="rec")

    with caplog.at_level(logging.ERROR, logger="gigq"):
        ok = queue.submit(Job("add", jobs.add, params={"a": 1, "b": 2}))
        worker.process_one()
        bad = queue.submit(Job("f", jobs.fail, max_attempts=1))
        worker.process_one()

    assert queue.get_status(ok)["status"] == "completed"
    assert queue.get_result(ok) == 3
    assert queue.get_status(bad)["status"] == "failed"
    assert "plugin 'raising' raised in gigq_job_succeeded" in caplog.text
    assert "plugin 'raising' raised in gigq_job_submitted" in caplog.text
    assert "succeeded hook broke" in caplog.text
    # The other plugin still saw everything.
    assert rec.names() == [
        "gigq_job_submitted",
        "gigq_job_started",
        "gigq_job_succeeded",
        "gigq_job_submitted",
        "gigq_job_started",
        "gigq_job_failed",
    ]


def test_implementation_may_take_a_subset_of_the_arguments(pm, queue, worker):
    seen = []

    class Partial:
        @hookimpl
        def gigq_job_succeeded(self, result):
            seen.append(result)

    pm.register(Partial(), name="partial")
    queue.submit(Job("add", jobs.add, params={"a": 2, "b": 2}))
    worker.process_one()

    assert seen == [4]


def test_trace_plugins_logs_hook_calls(monkeypatch, clock, store, caplog):
    monkeypatch.setenv("GIGQ_TRACE_PLUGINS", "1")
    pm = make_plugin_manager(load_entrypoints=False)
    pm.register(RecordingPlugin(), name="rec")

    with (
        caplog.at_level(logging.INFO, logger="gigq.plugins"),
        JobQueue(f"memory://{store}", plugin_manager=pm, clock=clock) as queue,
    ):
        queue.submit(Job("n", jobs.noop))

    assert "gigq_job_submitted" in caplog.text
    assert "gigq_storage" in caplog.text


def test_without_trace_plugins_hook_calls_are_not_logged(clock, store, caplog):
    pm = make_plugin_manager(load_entrypoints=False)
    pm.register(RecordingPlugin(), name="rec")

    with (
        caplog.at_level(logging.INFO, logger="gigq.plugins"),
        JobQueue(f"memory://{store}", plugin_manager=pm, clock=clock) as queue,
    ):
        queue.submit(Job("n", jobs.noop))

    assert "gigq_job_submitted" not in caplog.text


@pytest.mark.parametrize("value", ["0", ""])
def test_trace_plugins_off_values(monkeypatch, value):
    monkeypatch.setenv("GIGQ_TRACE_PLUGINS", value)
    assert not make_plugin_manager(load_entrypoints=False).is_traced


def test_built_in_plugins_are_registered(pm):
    for name in ("memory", "retry", "json"):
        assert pm.has_plugin(name)
    assert Hooks(pm).serializers().keys() >= {"json"}
    assert Hooks(pm).retry_strategies().keys() >= {
        "fixed",
        "linear",
        "exponential",
        "exponential_jitter",
    }


def test_disable_plugins_never_disables_the_built_ins(monkeypatch):
    monkeypatch.setenv("GIGQ_DISABLE_PLUGINS", "*")
    pm = make_plugin_manager()
    for name in ("memory", "retry", "json"):
        assert pm.has_plugin(name)


def test_a_plugin_retry_strategy_is_usable_by_name(pm, clock, store):
    class Never:
        def delay(self, attempt, error):
            return None

    class Strategies:
        @hookimpl
        def gigq_retry_strategies(self):
            return {"never": Never}

    pm.register(Strategies(), name="strategies")
    with JobQueue(f"memory://{store}", plugin_manager=pm, clock=clock) as queue:
        job_id = queue.submit(Job("f", jobs.fail, retry="never"))
        Worker(queue, worker_id="w1").process_one()
        assert queue.get_status(job_id)["status"] == "failed"
        assert queue.get_status(job_id)["attempts"] == 1


def test_a_plugin_storage_claims_a_url_scheme(pm, clock):
    from gigq_core.memory import MemoryStorage

    mine = MemoryStorage("mine")

    class Storage:
        @hookimpl
        def gigq_storage(self, url, options):
            return mine if url.startswith("mine://") else None

    pm.register(Storage(), name="mine")
    with JobQueue("mine://x", plugin_manager=pm, clock=clock) as queue:
        assert queue.storage is mine


def test_unknown_url_scheme_is_a_config_error(pm, clock):
    from gigq_core import ConfigError

    with pytest.raises(ConfigError, match="nosuch://"):
        JobQueue("nosuch://x", plugin_manager=pm, clock=clock)


def test_submitted_passes_the_job_as_stored(queue, rec):
    # A job without dependencies is passed as built; one whose dependency was cancelled is
    # read back, as the storage stores it cancelled.
    parent_id = queue.submit(Job("p", jobs.echo, params={"x": 1}, priority=5))
    queue.cancel(parent_id)
    child_id = queue.submit(Job("c", jobs.noop, dependencies=[parent_id]))

    submitted = [kw["job"] for name, kw in rec.kwargs if name == "gigq_job_submitted"]
    parent, child = submitted
    assert (parent.id, parent.status, parent.priority, parent.params) == (
        parent_id,
        "pending",
        5,
        '{"x":1}',
    )
    assert (child.id, child.status) == (child_id, "cancelled")
    assert parent_id in (child.error or "")
