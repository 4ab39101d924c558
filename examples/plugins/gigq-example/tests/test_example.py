"""The example plugin, in-process (no install needed) and as installed (its entry point)."""

from __future__ import annotations

import importlib.metadata
import json
import logging
import tomllib
import uuid
from pathlib import Path

import example_jobs
import pytest
from click.testing import CliRunner
from gigq.plugin import (
    ErrorInfo,
    FakeClock,
    InvalidJobError,
    Job,
    JobQueue,
    Worker,
    make_plugin_manager,
)
from gigq_cli import create_cli

from gigq_example import Fibonacci

HERE = Path(__file__).resolve().parent


def test_entry_point_names_the_module():
    with (HERE.parent / "pyproject.toml").open("rb") as handle:
        project = tomllib.load(handle)["project"]

    assert project["name"] == "gigq-example"
    assert project["entry-points"]["gigq"] == {"example": "gigq_example"}


def test_every_hook_of_the_plugin_exists(pm):
    pm.check_pending()


def test_fibonacci_delays():
    error = ErrorInfo(type="ValueError", message="x")
    strategy = Fibonacci(unit=2, cap=20)

    assert [strategy.delay(n, error) for n in range(1, 9)] == [2, 2, 4, 6, 10, 16, 20, 20]
    assert Fibonacci().delay(10_000, error) == 3600
    assert Fibonacci(dont_retry_on=["ValueError"]).delay(1, error) is None


def test_a_job_retries_on_the_fibonacci_strategy(queue, rec):
    job_id = queue.submit(
        Job("flaky", example_jobs.flaky, params={"failures": 3}, max_attempts=5,
            retry=("fibonacci", {"unit": 2}))
    )  # fmt: skip
    worker = Worker(queue, worker_id="w1")
    try:
        for delay in (2, 2, 4):
            assert worker.process_one()
            assert worker.process_one() is False  # not due yet
            queue.clock.advance(delay)
        assert worker.process_one()
    finally:
        worker.close()

    assert queue.get_result(job_id) == "ok"
    delays = [kwargs["delay"] for hook, kwargs in rec.kwargs if hook == "gigq_job_retrying"]
    assert delays == [2, 2, 4]


def test_dont_retry_on_fails_at_once(queue):
    job_id = queue.submit(
        Job("broken", example_jobs.broken,
            retry=("fibonacci", {"dont_retry_on": ["PermissionError"]}))
    )  # fmt: skip
    Worker(queue, worker_id="w1").process_one()

    record = queue.get_job(job_id)
    assert (record.status.value, record.attempts) == ("failed", 1)


def test_bad_strategy_parameters_are_refused_at_submit(queue):
    with pytest.raises(InvalidJobError, match="fibonacci"):
        queue.submit(Job("x", example_jobs.broken, retry=("fibonacci", {"speed": 3})))


def test_a_job_that_failed_for_good_is_logged(queue, caplog):
    job_id = queue.submit(
        Job("flaky", example_jobs.flaky, params={"failures": 9}, max_attempts=2,
            retry=("fibonacci", {"unit": 0}))
    )  # fmt: skip
    worker = Worker(queue, worker_id="w1")
    with caplog.at_level(logging.WARNING, logger="gigq_example"):
        worker.process_one()
        assert "failed for good" not in caplog.text  # attempt 1 is retried
        worker.process_one()
    worker.close()

    assert f"job 'flaky' ({job_id}) failed for good after 2 attempt(s)" in caplog.text
    assert "ConnectionError: attempt 2 failed" in caplog.text


# -- as installed --------------------------------------------------------------------------


def _installed_entry_point() -> importlib.metadata.EntryPoint:
    found = [e for e in importlib.metadata.entry_points(group="gigq") if e.name == "example"]
    assert found, (
        "gigq-example is not installed: run "
        "`python -m pip install -e examples/plugins/gigq-example` (plugins/run-tests.sh does)"
    )
    return found[0]


def test_the_installed_entry_point_loads_the_plugin():
    entry = _installed_entry_point()
    assert entry.value == "gigq_example"
    assert entry.dist is not None and entry.dist.name == "gigq-example"

    pm = make_plugin_manager()

    assert pm.has_plugin("example")
    assert "example" not in pm.failures
    pm.check_pending()


def _listed() -> dict[str, dict]:
    result = CliRunner().invoke(create_cli(make_plugin_manager()), ["--json", "plugins"])
    assert result.exit_code == 0, result.output
    return {row["name"]: row for row in json.loads(result.stdout)["plugins"]}


def test_gigq_plugins_lists_the_installed_plugin_and_its_hooks():
    _installed_entry_point()

    assert _listed()["example"]["hooks"] == ["gigq_job_failed", "gigq_retry_strategies"]


def test_gigq_plugins_shows_the_installed_plugin_version():
    _installed_entry_point()

    assert _listed()["example"]["version"] == importlib.metadata.version("gigq-example")


@pytest.mark.parametrize(
    ("retry", "delays"),
    [(("fibonacci", {"unit": 2}), [2, 2, 4]), ("fibonacci_minutes", [60, 60, 120])],
    ids=["factory", "strategy-object"],
)
def test_the_installed_plugin_strategies_retry_jobs(retry, delays):
    _installed_entry_point()
    pm = make_plugin_manager()  # the installed plugin, loaded by its entry point
    with JobQueue(f"memory://installed_{uuid.uuid4().hex}", plugin_manager=pm,
                  clock=FakeClock()) as queue:  # fmt: skip
        job_id = queue.submit(
            Job("flaky", example_jobs.flaky, params={"failures": 3}, max_attempts=5, retry=retry)
        )
        worker = Worker(queue, worker_id="w1")
        try:
            seen = []
            for _ in delays:
                assert worker.process_one()
                record = queue.get_job(job_id)
                seen.append((record.run_at - queue.clock.now()).total_seconds())
                queue.clock.advance(seen[-1])
            assert worker.process_one()
        finally:
            worker.close()
        assert seen == delays
        assert queue.get_result(job_id) == "ok"


def test_a_strategy_object_takes_no_parameters(queue):
    with pytest.raises(InvalidJobError, match=r"fibonacci_minutes.*no parameters"):
        queue.submit(Job("x", example_jobs.broken, retry=("fibonacci_minutes", {"unit": 1})))


def test_the_installed_plugin_can_be_disabled(monkeypatch):
    _installed_entry_point()
    monkeypatch.setenv("GIGQ_DISABLE_PLUGINS", "example")

    assert not make_plugin_manager().has_plugin("example")
