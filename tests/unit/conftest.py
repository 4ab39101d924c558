"""Fixtures of the unit tests: the core on the in-memory adapter with a fake clock."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from gigq import JobQueue
from gigq_core import Worker
from gigq_core.plugins import make_plugin_manager
from gigq_core.testing import FakeClock, RecordingPlugin


@pytest.fixture(autouse=True)
def _no_gigq_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings from the developer's environment must not leak into the unit tests."""
    for name in list(os.environ):
        if name.startswith("GIGQ_"):
            monkeypatch.delenv(name)


@pytest.fixture
def pm() -> Any:
    """A fresh plugin manager without third-party plugins."""
    return make_plugin_manager(load_entrypoints=False)


@pytest.fixture
def clock() -> FakeClock:
    """A fake clock at 2030-01-01 UTC."""
    return FakeClock()


@pytest.fixture
def store() -> str:
    """A memory store name unique to the test."""
    return f"unit_{uuid.uuid4().hex}"


@pytest.fixture
def queue(pm: Any, clock: FakeClock, store: str) -> Iterator[JobQueue]:
    """A queue on a fresh in-memory store (the facade's: it also reads jobs as dicts)."""
    with JobQueue(f"memory://{store}", plugin_manager=pm, clock=clock) as opened:
        yield opened


@pytest.fixture
def worker(queue: JobQueue) -> Worker:
    """An inline worker over `queue`."""
    return Worker(queue, worker_id="w1")


@pytest.fixture
def rec(pm: Any) -> RecordingPlugin:
    """A recording plugin registered on `pm`."""
    recording = RecordingPlugin()
    pm.register(recording, name="rec")
    return recording
