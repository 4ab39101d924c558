"""Lifecycle hooks under a deadline (`HookRunner`, what a worker's loop uses): a hanging
implementation or wrapper is given up on once and skipped after, the others still run, and
whatever a plugin raises there (SystemExit, KeyboardInterrupt) is logged as its failure."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest

from gigq import hookimpl
from gigq_core._guards import HookRunner, bounded_hooks

pytestmark = pytest.mark.timeout(60)

#: Released at the end of each test, so no helper thread stays stuck.
_release = threading.Event()


@pytest.fixture(autouse=True)
def release() -> Any:
    _release.clear()
    yield
    _release.set()


class Hangs:
    """gigq_job_succeeded hangs until the test ends."""

    def __init__(self) -> None:
        self.calls = 0

    @hookimpl
    def gigq_job_succeeded(self, job: Any) -> None:
        self.calls += 1
        _release.wait(30)


class HangsAfterYield:
    """A wrapper whose code after the `yield` hangs."""

    @hookimpl(wrapper=True)
    def gigq_job_succeeded(self, job: Any) -> Any:
        result = yield
        _release.wait(30)
        return result


class Raises:
    def __init__(self, raised: BaseException) -> None:
        self.raised = raised

    @hookimpl
    def gigq_job_succeeded(self, job: Any) -> None:
        raise self.raised


class Records:
    def __init__(self) -> None:
        self.threads: list[str] = []

    @hookimpl
    def gigq_job_succeeded(self, job: Any) -> None:
        self.threads.append(threading.current_thread().name)


def fire(pm: Any) -> None:
    pm.hook.gigq_job_succeeded(job=None, result=None, duration=0.0)


def test_a_hanging_implementation_never_holds_the_loop_and_is_given_up_on_once(
    pm: Any, caplog: pytest.LogCaptureFixture
) -> None:
    hanging = Hangs()
    pm.register(hanging, name="hanging")
    records = Records()
    pm.register(records, name="records")

    with (
        caplog.at_level(logging.ERROR, logger="gigq.plugins"),
        bounded_hooks(HookRunner(0.3, lambda: None)) as runner,
    ):
        started = time.monotonic()
        fire(pm)
        fire(pm)
        posted = time.monotonic() - started
        time.sleep(0.5)  # past the timeout: the next post gives up on it
        fire(pm)
        deadline = time.monotonic() + 5
        while len(records.threads) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)

    assert posted < 0.25  # posted: the loop never waited
    assert hanging.calls == 1  # its second call waited behind the first, then was dropped
    assert runner.hung == {"hanging": "gigq_job_succeeded"}
    assert records.threads == ["gigq-hooks"] * 3  # the others still ran, in order
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1
    assert messages[0].startswith("plugin 'hanging' has not returned from gigq_job_succeeded")


def test_a_hanging_wrapper_is_waited_for_at_most_the_timeout(
    pm: Any, caplog: pytest.LogCaptureFixture
) -> None:
    pm.register(HangsAfterYield(), name="hanging")
    records = Records()
    pm.register(records, name="records")

    with (
        caplog.at_level(logging.ERROR, logger="gigq.plugins"),
        bounded_hooks(HookRunner(0.3, lambda: None)) as runner,
    ):
        started = time.monotonic()
        fire(pm)
        first = time.monotonic() - started
        started = time.monotonic()
        fire(pm)
        second = time.monotonic() - started

    assert 0.3 <= first < 5
    assert second < 0.25  # skipped: no second wait
    assert runner.hung == {"hanging": "gigq_job_succeeded"}
    assert len([r for r in caplog.records if "has not returned" in r.getMessage()]) == 1


def test_past_the_grace_period_closing_waits_only_a_moment(pm: Any) -> None:
    pm.register(Hangs(), name="hanging")

    started = time.monotonic()
    with bounded_hooks(HookRunner(60.0, lambda: -1.0)) as runner:
        fire(pm)
    waited = time.monotonic() - started

    assert HookRunner.LAST_CALLS <= waited < HookRunner.LAST_CALLS + 2
    assert "hanging" in runner.hung


@pytest.mark.parametrize("raised", [SystemExit(3), KeyboardInterrupt(), RuntimeError("boom")])
def test_under_a_runner_anything_a_plugin_raises_is_logged(
    pm: Any, caplog: pytest.LogCaptureFixture, raised: BaseException
) -> None:
    pm.register(Raises(raised), name="raising")
    records = Records()
    pm.register(records, name="records")

    with (
        caplog.at_level(logging.ERROR, logger="gigq.plugins"),
        bounded_hooks(HookRunner(5.0, lambda: None)) as runner,
    ):
        fire(pm)
        fire(pm)

    assert runner.hung == {}
    assert [r.getMessage() for r in caplog.records] == [
        "plugin 'raising' raised in gigq_job_succeeded"
    ] * 2
    assert len(records.threads) == 2


@pytest.mark.parametrize("raised", [SystemExit(3), KeyboardInterrupt()])
def test_outside_a_worker_loop_systemexit_and_keyboardinterrupt_go_on_to_the_caller(
    pm: Any, raised: BaseException
) -> None:
    pm.register(Raises(raised), name="raising")

    with pytest.raises(type(raised)):
        fire(pm)
