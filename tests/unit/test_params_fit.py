"""Params are bound to the function's signature at submit where this process has the
function, so a typo fails at once instead of burning every attempt on a TypeError."""

from __future__ import annotations

from typing import Any

import pytest

from gigq import Job, JobQueue
from gigq_core.errors import InvalidJobError


def add(a: int, b: int) -> int:
    """Two required params."""
    return a + b


def anything(**params: Any) -> None:
    """Takes any params."""


def merge(parent_results: dict[str, Any], scale: int = 1) -> int:
    """A job that gets its dependencies' results."""
    return scale * len(parent_results)


@pytest.fixture
def queue(tmp_path: Any) -> Any:
    with JobQueue(str(tmp_path / "jobs.db")) as jobs:
        yield jobs


def test_a_function_object_with_params_that_do_not_fit_is_refused(queue: JobQueue) -> None:
    with pytest.raises(
        InvalidJobError, match=r"do not fit .*:add\(a, b\): got an unexpected keyword argument 'c'"
    ):
        queue.submit(Job("add", add, params={"a": 1, "b": 2, "c": 3}))
    with pytest.raises(InvalidJobError, match="missing a required argument: 'b'"):
        queue.submit(Job("add", add, params={"a": 1}))
    assert queue.list_jobs() == []


def test_params_that_fit_are_stored(queue: JobQueue) -> None:
    queue.submit(Job("add", add, params={"a": 1, "b": 2}))
    queue.submit(Job("any", anything, params={"x": 1}))
    assert len(queue.list_jobs()) == 2


def test_parent_results_count_as_given_to_a_job_that_takes_them(queue: JobQueue) -> None:
    first = queue.submit(Job("add", add, params={"a": 1, "b": 2}))
    queue.submit(Job("merge", merge, params={"scale": 2}, dependencies=[first]))
    with pytest.raises(InvalidJobError, match="missing a required argument: 'parent_results'"):
        queue.submit(Job("merge", merge, params={"scale": 2}))  # no dependency: no results


def test_a_module_this_process_has_not_imported_is_not_imported_to_check(
    queue: JobQueue,
) -> None:
    import sys

    assert "tests.never_imported_here" not in sys.modules
    queue.submit(Job("x", "tests.never_imported_here:run", params={"anything": 1}))
    assert "tests.never_imported_here" not in sys.modules
