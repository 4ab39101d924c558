"""Params edge cases on SQLite (docs/guarantees.md; the serializer's own cases are in
tests/unit/test_serializers.py, the in-memory queue's in tests/unit/test_queue.py):
unserializable values, NaN, lone surrogates and deep nesting refused with nothing stored;
10 MB refused by default and an exact round trip (params and result) with the cap raised to
16 MiB; Unicode exactly; and a property test of submit-then-read equality."""

from __future__ import annotations

import math
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pluggy
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gigq import JobQueue
from gigq_core import Job, SerializationError, Worker, make_plugin_manager

MIB = 1024 * 1024


@pytest.fixture
def pm() -> pluggy.PluginManager:
    """Built-in plugins only."""
    return make_plugin_manager(load_entrypoints=False)


@pytest.fixture
def queue(tmp_path: Path, pm: pluggy.PluginManager) -> Iterator[JobQueue]:
    """A queue on a SQLite file."""
    with JobQueue(str(tmp_path / "jobs.db"), plugin_manager=pm) as opened:
        yield opened


def deep(levels: int) -> Any:
    """A list nested `levels` deep."""
    value: Any = []
    for _ in range(levels):
        value = [value]
    return value


class Unserializable:
    """Not JSON."""


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"o": Unserializable()}, "JSON"),
        ({"b": b"bytes"}, "JSON"),
        ({"s": {1, 2}}, "JSON"),
        ({"x": math.nan}, "JSON"),
        ({"x": [math.inf]}, "JSON"),
        ({"x": {"y": -math.inf}}, "JSON"),
        ({"x": "ok \ud800 not ok"}, "surrogate"),
        ({"\udfff": 1}, "surrogate"),
        ({"x": {1: "int key"}}, "key"),
        ({"x": deep(2000)}, "nested too deeply"),
    ],
    ids=[
        "object",
        "bytes",
        "set",
        "nan",
        "inf",
        "-inf",
        "surrogate",
        "surrogate-key",
        "int-key",
        "deep",
    ],
)
def test_refused_params_store_nothing(queue: JobQueue, params: Any, reason: str) -> None:
    with pytest.raises(SerializationError, match=reason) as caught:
        queue.submit(Job("bad", "tests.jobs:echo", params=params))
    assert caught.value.exit_code == 1
    good = Job("good", "tests.jobs:echo")
    with pytest.raises(SerializationError):
        queue.submit_many([good, Job("bad", "tests.jobs:echo", params=params)])
    assert queue.stats()["total"] == 0


def test_moderate_nesting_round_trips(queue: JobQueue) -> None:
    value = deep(98)  # with the params object, 100 levels: the max_nesting_depth default
    job_id = queue.submit(Job("deep", "tests.jobs:echo", params={"v": value}))
    assert queue.get_status(job_id)["params"] == {"v": value}


UNICODE = {
    "latin": "héllo wörld",
    "cjk": "日本語の文字列",
    "emoji": "\U0001f600\U0001f469\u200d\U0001f4bb",
    "rtl": "\u05e9\u05dc\u05d5\u05dd",
    "combining": "e\u0301 vs \u00e9",
    "controls": "nul \x00 bell \x07 esc \x1b del \x7f",
    "quotes": "' \" ` \\ ; -- /* */",
    "bom": "\ufeffstart",
    "max": "\U0010ffff",
    "ключ ✓": ["значение", {"ü": "ß"}],
}


def test_unicode_round_trips_exactly_through_a_worker(
    tmp_path: Path, pm: pluggy.PluginManager
) -> None:
    db = str(tmp_path / "jobs.db")
    with JobQueue(db, plugin_manager=pm) as queue:
        job_id = queue.submit(Job("ünï ✓", "tests.jobs:echo", params=UNICODE))
        assert queue.get_status(job_id)["params"] == UNICODE
        worker = Worker(queue, executor="inline", plugin_manager=pm)
        try:
            assert worker.process_one()
        finally:
            worker.close()
        status = queue.get_status(job_id)
        assert (status["status"], status["result"]) == ("completed", UNICODE)
        assert status["name"] == "ünï ✓"


def test_ten_megabytes_refused_by_default_and_exact_with_the_cap_raised(
    tmp_path: Path, pm: pluggy.PluginManager
) -> None:
    started = time.monotonic()
    db = str(tmp_path / "jobs.db")
    # Every byte value a JSON string can hold, repeated to 10 MB (UTF-8, multi-byte too).
    unit = "".join(chr(c) for c in range(1, 0x800) if not 0xD800 <= c <= 0xDFFF)
    blob = unit * -(-10 * MIB // len(unit.encode()))
    assert len(blob.encode()) >= 10 * MIB
    with JobQueue(db, plugin_manager=pm) as queue:
        with pytest.raises(SerializationError, match="limit") as caught:
            queue.submit(Job("big", "tests.jobs:echo", params={"blob": blob}))
        assert "max_payload" in str(caught.value)
        assert queue.stats()["total"] == 0
    with JobQueue(db, plugin_manager=pm, max_payload=16 * MIB) as queue:
        job_id = queue.submit(Job("big", "tests.jobs:echo", params={"blob": blob}))
        assert queue.get_status(job_id)["params"]["blob"] == blob
        worker = Worker(queue, executor="inline", plugin_manager=pm, max_payload=16 * MIB)
        try:
            assert worker.process_one()
        finally:
            worker.close()
        status = queue.get_status(job_id)
        assert status["status"] == "completed", status["error"]
        assert status["result"] == {"blob": blob}
    conn = sqlite3.connect(db)
    (stored,) = conn.execute("SELECT length(CAST(params AS BLOB)) FROM jobs").fetchone()
    conn.close()
    assert stored >= 10 * MIB
    print(f"[params 10MB] bytes={stored} round_trip=exact time={time.monotonic() - started:.1f}s")


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(), children, max_size=5)
    ),
    max_leaves=30,
)


def same(a: Any, b: Any) -> bool:
    """Equal, and of the same JSON types all the way down (1 is not 1.0, -0.0 is not 0.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


def test_submit_then_read_returns_the_same_json(tmp_path: Path, pm: pluggy.PluginManager) -> None:
    examples = 0
    with JobQueue(str(tmp_path / "jobs.db"), plugin_manager=pm) as queue:

        @settings(suppress_health_check=[HealthCheck.too_slow])
        @given(params=st.dictionaries(st.text(), JSON, max_size=6))
        def round_trip(params: dict[str, Any]) -> None:
            nonlocal examples
            examples += 1
            job_id = queue.submit(Job("p", "tests.jobs:echo", params=params))
            assert same(queue.get_status(job_id)["params"], params)
            [listed] = [j for j in queue.list_jobs(limit=1) if j["id"] == job_id]
            assert same(listed["params"], params)

        round_trip()
    # Each example compared two read-backs (get_status and list_jobs); any mismatch failed it.
    print(f"[params property] examples={examples} compared={2 * examples}")
