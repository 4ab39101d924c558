"""How much a worker reserves: bounded by expected run time and by count, never for a
function it has not run or one slower than the window."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gigq_core.worker._prefetch import MAX_FUNCTIONS, Prefetcher


def test_nothing_is_reserved_before_a_function_has_run_here() -> None:
    assert Prefetcher(0.05, 32).plan(()) == (0, [])


def test_a_fast_function_is_reserved_up_to_the_window() -> None:
    prefetcher = Prefetcher(0.05, 32)
    prefetcher.observe([("m:fast", 0.01)])
    assert prefetcher.plan(()) == (5, ["m:fast"])


def test_the_count_is_capped() -> None:
    prefetcher = Prefetcher(0.05, 8)
    prefetcher.observe([("m:noop", 0.0)])
    assert prefetcher.plan(()) == (8, ["m:noop"])


def test_a_slow_function_is_never_reserved() -> None:
    prefetcher = Prefetcher(0.05, 32)
    prefetcher.observe([("m:slow", 0.2), ("m:fast", 0.001)])
    count, functions = prefetcher.plan(())
    assert functions == ["m:fast"] and count == 32


def test_jobs_already_reserved_use_the_budget() -> None:
    prefetcher = Prefetcher(0.05, 32)
    prefetcher.observe([("m:fast", 0.01)])
    assert prefetcher.plan(["m:fast"] * 3) == (2, ["m:fast"])
    assert prefetcher.plan(["m:fast"] * 5) == (0, [])


def test_a_function_that_slows_down_stops_being_reserved() -> None:
    prefetcher = Prefetcher(0.05, 32)
    prefetcher.observe([("m:f", 0.001)])
    for _ in range(30):
        prefetcher.observe([("m:f", 1.0)])
    assert prefetcher.plan(()) == (0, [])


@pytest.mark.parametrize(("window", "max_jobs"), [(0.0, 32), (0.05, 0)])
def test_off(window: float, max_jobs: int) -> None:
    prefetcher = Prefetcher(window, max_jobs)
    prefetcher.observe([("m:f", 0.0)])
    assert not prefetcher.enabled
    assert prefetcher.plan(()) == (0, [])


def test_only_the_recent_functions_are_remembered() -> None:
    prefetcher = Prefetcher(0.05, 32)
    prefetcher.observe((f"m:f{i}", 0.001) for i in range(MAX_FUNCTIONS + 10))
    assert prefetcher.expected("m:f0") is None
    assert prefetcher.expected(f"m:f{MAX_FUNCTIONS + 9}") is not None


@given(
    window=st.floats(0.001, 1.0),
    max_jobs=st.integers(1, 100),
    durations=st.lists(
        st.tuples(st.sampled_from(["a:f", "b:g", "c:h"]), st.floats(0.0, 2.0)), max_size=30
    ),
    held=st.lists(st.sampled_from(["a:f", "b:g", "c:h"]), max_size=10),
)
def test_a_plan_never_exceeds_the_window_or_the_count(
    window: float, max_jobs: int, durations: list[tuple[str, float]], held: list[str]
) -> None:
    prefetcher = Prefetcher(window, max_jobs)
    prefetcher.observe(durations)
    count, functions = prefetcher.plan(held)
    assert 0 <= count <= max(0, max_jobs - len(held))
    if count:
        expected = [prefetcher.expected(f) for f in functions]
        assert all(e is not None and e <= window for e in expected)
        known = [prefetcher.expected(f) for f in held]
        already = sum(window if seconds is None else seconds for seconds in known)
        slowest = max(e for e in expected if e is not None)
        assert already + count * slowest <= window + 1e-9
