"""A job whose module the worker cannot import is handed back uncounted, and the worker
backs off from that module while serving the others (issue 20, item 2)."""

from __future__ import annotations

import json
import logging
import os
import sys

import pytest

from gigq_core import Job, Worker
from gigq_core.execution import (
    AttemptResult,
    ModuleUnavailableError,
    PermanentError,
    load_function,
)
from gigq_core.records import FREE_HANDBACKS, JobStatus
from gigq_core.worker._imports import NAMESPACE, describe_import_path, read_published
from tests import jobs

MISSING = "no_such_module_i20"


@pytest.mark.parametrize(
    ("path", "module"),
    [
        (f"{MISSING}:add", MISSING),
        (f"{MISSING}.sub.deeper:add", MISSING),
        ("tests.no_such_module_i20:add", "tests.no_such_module_i20"),
    ],
)
def test_a_module_missing_here_is_told_apart(path, module):
    with pytest.raises(ModuleUnavailableError) as raised:
        load_function(path, ())
    assert raised.value.module == module


def test_a_module_that_imports_something_missing_is_the_jobs_problem(tmp_path, monkeypatch):
    (tmp_path / "broken_i20.py").write_text("import no_such_dependency_i20\n\ndef f():\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PermanentError) as raised:
        load_function("broken_i20:f", ())
    assert not isinstance(raised.value, ModuleUnavailableError)
    with pytest.raises(PermanentError) as missing:
        load_function("tests.jobs:no_such_function", ())
    assert not isinstance(missing.value, ModuleUnavailableError)


def test_the_import_path_is_shown_short(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    shown = describe_import_path(["", "/opt/code", os.path.dirname(os.__file__)])

    assert (
        shown
        == f"{tmp_path} (the current folder), /opt/code, 1 folder of Python and installed packages"
    )


def test_the_job_is_handed_back_uncounted_and_its_module_backed_off(
    queue, worker, clock, rec, caplog
):
    blocked = queue.submit(Job("a", f"{MISSING}:add", priority=9))
    other = queue.submit(Job("b", jobs.add, params={"a": 1, "b": 2}))

    with caplog.at_level(logging.INFO, logger="gigq"):
        assert worker.process_one() is True

    status = queue.get_status(blocked)
    assert (status["status"], status["attempts"]) == ("pending", 0)
    assert [e["status"] for e in status["executions"]] == ["handed_back"]
    [error] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert f"cannot import module '{MISSING}'" in error.getMessage()
    assert "or pass --path DIR" in error.getMessage()
    # No attempt happened: no hook says the job failed.
    assert ("gigq_job_failed", blocked) not in rec.calls
    published = read_published(queue.storage)
    assert list(published) == ["w1"] and list(published["w1"]) == [MISSING]

    # The back-off: the next claim passes over the blocked job (higher priority) to the other.
    assert worker.process_one() is True
    assert queue.get_status(other)["status"] == "completed"
    assert worker.process_one() is False
    assert queue.get_status(blocked)["attempts"] == 0

    clock.advance(29)
    assert worker.process_one() is False
    clock.advance(2)  # 30 s passed: it tries again, fails, and backs off twice as long
    assert worker.process_one() is True
    clock.advance(59)
    assert worker.process_one() is False
    clock.advance(2)
    assert worker.process_one() is True
    assert queue.storage.get(blocked).handbacks == FREE_HANDBACKS == 3

    # Every free hand-back used: the job ends failed with the import error.
    clock.advance(600)
    assert worker.process_one() is True
    status = queue.get_status(blocked)
    assert (status["status"], status["attempts"]) == ("failed", 1)
    assert f"cannot import module '{MISSING}'" in status["error"]
    assert "handed back 3 times already" in status["error"]

    worker.close()
    assert queue.storage.kv_items(NAMESPACE) == {}


def test_an_import_that_works_again_ends_the_back_off(queue, worker, clock, tmp_path, monkeypatch):
    name = f"{MISSING}_later"
    job_ids = [queue.submit(Job(f"a{i}", f"{name}:add", params={"a": i})) for i in range(2)]
    assert worker.process_one() is True
    (tmp_path / f"{name}.py").write_text("def add(a):\n    return a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    clock.advance(31)

    try:
        assert worker.process_one() is True
        assert worker.process_one() is True
    finally:
        sys.modules.pop(name, None)

    assert [queue.get_status(i)["result"] for i in job_ids] == [0, 1]
    assert not worker.imports.active()
    assert queue.storage.kv_items(NAMESPACE) == {}


def test_reserved_jobs_of_a_blocked_module_go_back_uncounted(queue, worker, clock):
    blocked = queue.submit(Job("a", f"{MISSING}:add"))
    other = queue.submit(Job("b", jobs.noop))
    record = queue.storage.get(blocked)
    assert record is not None
    worker.imports.attempt_ended(
        record, AttemptResult.cannot_import(ModuleUnavailableError("not here", MISSING))
    )
    _, reserved = queue.storage.claim_ahead(
        "w1", 0, 2, clock.now(), 30.0, None, [f"{MISSING}:add", "tests.jobs:noop"]
    )
    worker.leases.reserve(reserved)

    started = worker.claims.claim(2)

    assert [r.id for r in started] == [other]
    after = queue.storage.get(blocked)
    assert after is not None
    assert (after.status, after.attempts, after.handbacks) == (JobStatus.PENDING, 0, 0)


def test_queue_limits_hold_while_claiming_around_a_blocked_module(queue, clock):
    worker = Worker(queue, worker_id="w1", queue_concurrency={"small": 1}, concurrency=4)
    for i in range(2):
        queue.submit(Job(f"a{i}", f"{MISSING}:add", queue="small", priority=9))
    small = [queue.submit(Job(f"s{i}", jobs.noop, queue="small")) for i in range(2)]
    big = [queue.submit(Job(f"b{i}", jobs.noop)) for i in range(2)]
    assert worker.process_one() is True  # a blocked job, handed back

    started = worker.claims.claim(4)

    assert sorted(r.id for r in started) == sorted([small[0], *big])
    published = json.loads(queue.storage.kv_get(NAMESPACE, "w1") or "{}")
    assert list(published) == [MISSING]
