"""Built-in retry strategies: delays, caps, jitter, retry_on / dont_retry_on."""

from __future__ import annotations

import pytest

from gigq_core import InvalidJobError, hookimpl
from gigq_core.records import ErrorInfo
from gigq_core.retry import (
    BUILTIN,
    DEFAULT_STRATEGY,
    Exponential,
    ExponentialJitter,
    Fixed,
    Linear,
    build_strategy,
)

VALUE_ERROR = ErrorInfo(type="ValueError", message="bad")
CUSTOM = ErrorInfo(type="tests.jobs.CustomError", message="custom")
OTHER_CUSTOM = ErrorInfo(type="elsewhere.CustomError", message="other")


def test_fixed_delay():
    strategy = Fixed(delay=5)
    assert [strategy.delay(n, VALUE_ERROR) for n in (1, 2, 10)] == [5, 5, 5]


def test_fixed_default_and_zero():
    assert Fixed().delay(1, VALUE_ERROR) == 1.0
    assert Fixed(delay=0).delay(3, VALUE_ERROR) == 0


def test_negative_delay_is_clamped_to_zero():
    assert Fixed(delay=-5).delay(1, VALUE_ERROR) == 0


def test_linear_delay_and_cap():
    strategy = Linear(base=2, cap=7)
    assert [strategy.delay(n, VALUE_ERROR) for n in (1, 2, 3, 4, 100)] == [2, 4, 6, 7, 7]


def test_exponential_delay_and_cap():
    strategy = Exponential(base=1, factor=2, cap=10)
    assert [strategy.delay(n, VALUE_ERROR) for n in (1, 2, 3, 4, 5, 6)] == [1, 2, 4, 8, 10, 10]


def test_exponential_with_base_and_factor():
    strategy = Exponential(base=3, factor=3, cap=1000)
    assert [strategy.delay(n, VALUE_ERROR) for n in (1, 2, 3)] == [3, 9, 27]


def test_exponential_does_not_overflow_for_huge_attempts():
    assert Exponential(base=1, factor=2, cap=600).delay(100_000, VALUE_ERROR) == 600


def test_exponential_default_cap_is_one_hour():
    assert Exponential().delay(1000, VALUE_ERROR) == 3600


@pytest.mark.parametrize("attempt", [1, 2, 3, 5, 8, 30])
def test_jitter_is_within_zero_and_the_exponential_delay(attempt):
    strategy = ExponentialJitter(base=1, factor=2, cap=60)
    ceiling = min(60, 2 ** (attempt - 1))
    delays = [strategy.delay(attempt, VALUE_ERROR) for _ in range(200)]

    assert all(0 <= d <= ceiling for d in delays)
    assert len(set(delays)) > 1  # it does vary


def test_default_strategy_is_exponential_jitter_base_1_cap_1_hour():
    assert DEFAULT_STRATEGY == "exponential_jitter"
    strategy = build_strategy(BUILTIN, DEFAULT_STRATEGY, {})
    assert isinstance(strategy, ExponentialJitter)
    assert strategy.base == 1
    assert strategy.cap == 3600
    assert all(0 <= strategy.delay(1, VALUE_ERROR) <= 1 for _ in range(50))
    assert all(0 <= strategy.delay(40, VALUE_ERROR) <= 3600 for _ in range(50))


# -- retry_on / dont_retry_on ----------------------------------------------------------------


@pytest.mark.parametrize("name", ["ValueError", ["ValueError"], ("KeyError", "ValueError")])
def test_dont_retry_on_by_short_name(name):
    strategy = Fixed(delay=1, dont_retry_on=name)
    assert strategy.delay(1, VALUE_ERROR) is None
    assert strategy.delay(1, CUSTOM) == 1


def test_dont_retry_on_short_name_matches_a_qualified_error_type():
    strategy = Fixed(delay=1, dont_retry_on=["CustomError"])
    assert strategy.delay(1, CUSTOM) is None
    assert strategy.delay(1, OTHER_CUSTOM) is None


def test_dont_retry_on_qualified_name_matches_only_that_type():
    strategy = Fixed(delay=1, dont_retry_on=["tests.jobs.CustomError"])
    assert strategy.delay(1, CUSTOM) is None
    assert strategy.delay(1, OTHER_CUSTOM) == 1


def test_retry_on_retries_only_the_listed_types():
    strategy = Linear(base=1, retry_on=["tests.jobs.CustomError"])
    assert strategy.delay(1, CUSTOM) == 1
    assert strategy.delay(1, VALUE_ERROR) is None
    assert strategy.delay(1, OTHER_CUSTOM) is None


def test_retry_on_by_short_name():
    strategy = Exponential(retry_on="CustomError")
    assert strategy.delay(1, CUSTOM) == 1
    assert strategy.delay(1, VALUE_ERROR) is None


def test_dont_retry_on_wins_over_retry_on():
    strategy = Fixed(retry_on=["ValueError"], dont_retry_on=["ValueError"])
    assert strategy.delay(1, VALUE_ERROR) is None


def test_jitter_honours_dont_retry_on():
    assert ExponentialJitter(dont_retry_on=["ValueError"]).delay(1, VALUE_ERROR) is None


# -- building by name ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "params", "kind"),
    [
        ("fixed", {"delay": 3}, Fixed),
        ("linear", {"base": 2, "cap": 10}, Linear),
        ("exponential", {"base": 2, "cap": 600}, Exponential),
        ("exponential_jitter", {"dont_retry_on": ["KeyError"]}, ExponentialJitter),
    ],
)
def test_build_strategy_by_name(name, params, kind):
    assert isinstance(build_strategy(BUILTIN, name, params), kind)


def test_build_strategy_fixed_uses_its_delay_parameter():
    assert build_strategy(BUILTIN, "fixed", {"delay": 3}).delay(1, VALUE_ERROR) == 3


def test_build_unknown_strategy_lists_the_known_ones():
    with pytest.raises(InvalidJobError, match=r"unknown retry strategy 'nope'.*exponential"):
        build_strategy(BUILTIN, "nope", {})


def test_build_strategy_with_bad_parameters():
    with pytest.raises(InvalidJobError, match="bad parameters for retry strategy 'linear'"):
        build_strategy(BUILTIN, "linear", {"speed": 3})


def test_strategies_are_frozen_values():
    assert Fixed(delay=2) == Fixed(delay=2)
    with pytest.raises(AttributeError):
        Fixed(delay=2).delay_seconds = 3  # type: ignore[misc]


def test_a_strategy_object_is_stored_by_name_and_rebuilt_by_the_worker(pm, clock, store):
    from gigq import JobQueue
    from gigq_core import Job, Worker
    from gigq_core.retry import Exponential
    from tests import jobs as job_functions

    with JobQueue(f"memory://{store}", plugin_manager=pm, clock=clock) as queue:
        job_id = queue.submit(
            Job("x", job_functions.fail, retry=Exponential(base=7, cap=100), max_attempts=2)
        )
        status = queue.get_status(job_id)
        assert status["retry"] == "exponential"
        assert status["retry_params"]["base"] == 7
        worker = Worker(queue, executor="inline")
        assert worker.process_one()
        record = queue.get_job(job_id)
        assert (record.run_at - clock.now()).total_seconds() == 7  # base * factor**0


def test_an_unregistered_strategy_object_is_refused_at_submit(pm, store):
    from gigq_core import InvalidJobError, Job, JobQueue

    class Custom:
        def delay(self, attempt, error):
            return 1.0

    with JobQueue(f"memory://{store}", plugin_manager=pm) as queue:
        with pytest.raises(InvalidJobError, match="cannot be stored"):
            queue.submit(Job("x", "tests.jobs:noop", retry=Custom()))
        assert queue.stats()["total"] == 0


class _Halving:
    """A plugin's strategy: `start`, then half as long before each later retry."""

    def __init__(self, start: float = 8.0) -> None:
        self.start = start

    def delay(self, attempt, error):
        return self.start / 2 ** (attempt - 1)


_READY = _Halving(start=40.0)


def _make_halving(start: float = 8.0) -> _Halving:
    return _Halving(start=start)


class _Strategies:
    """A plugin offering a strategy object, a factory function and a value that is neither."""

    @hookimpl
    def gigq_retry_strategies(self):
        return {"ready": _READY, "halving": _make_halving, "broken": 42}


@pytest.fixture
def plugin_pm(pm):
    pm.register(_Strategies(), name="strategies")
    return pm


@pytest.mark.parametrize(
    ("retry", "first_delay"),
    [("ready", 40), (_READY, 40), (("halving", {"start": 6}), 6), ("halving", 8)],
    ids=["object-by-name", "object-itself", "factory-with-params", "factory-defaults"],
)
def test_a_plugin_strategy_may_be_an_object_or_a_factory(
    plugin_pm, clock, store, retry, first_delay
):
    from gigq import JobQueue
    from gigq_core import Job, Worker
    from tests import jobs as job_functions

    with JobQueue(f"memory://{store}", plugin_manager=plugin_pm, clock=clock) as queue:
        job_id = queue.submit(Job("x", job_functions.fail, retry=retry, max_attempts=3))
        worker = Worker(queue, executor="inline")
        delays = []
        for _ in range(2):
            assert worker.process_one()
            delays.append((queue.get_job(job_id).run_at - clock.now()).total_seconds())
            clock.advance(delays[-1])
        assert delays == [first_delay, first_delay / 2]


def test_a_plugin_strategy_object_refuses_parameters_and_a_non_strategy_is_refused(
    plugin_pm, store
):
    from gigq_core import Job, JobQueue

    with JobQueue(f"memory://{store}", plugin_manager=plugin_pm) as queue:
        with pytest.raises(InvalidJobError, match="'ready' is a ready strategy object"):
            queue.submit(Job("x", "tests.jobs:noop", retry=("ready", {"start": 1})))
        with pytest.raises(InvalidJobError, match="'broken' is neither a strategy object"):
            queue.submit(Job("x", "tests.jobs:noop", retry="broken"))
        assert queue.stats()["total"] == 0


def test_a_strategy_class_is_a_factory_even_though_it_has_delay():
    assert build_strategy(BUILTIN, "fixed", {"delay": 3}) == Fixed(delay=3)
    assert build_strategy({"ready": _READY}, "ready", {}) is _READY
