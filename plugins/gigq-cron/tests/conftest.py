"""Fixtures: a plugin manager with gigq-cron, queues on memory and SQLite, a fake clock."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from gigq import JobQueue
from gigq.plugin import FakeClock, make_plugin_manager

import gigq_cron


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """No GIGQ_* settings from the developer, and no pyproject above the test."""
    for name in list(os.environ):
        if name.startswith("GIGQ_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def pm() -> Any:
    """A plugin manager with gigq-cron registered (no entry points)."""
    manager = make_plugin_manager(load_entrypoints=False)
    manager.register(gigq_cron, name="cron")
    return manager


@pytest.fixture
def clock() -> FakeClock:
    """A fake clock at 2030-01-01 00:00:30 UTC."""
    return FakeClock(datetime(2030, 1, 1, 0, 0, 30, tzinfo=UTC))


@pytest.fixture
def store() -> str:
    """A memory store name unique to the test."""
    return f"memory://cron_{uuid.uuid4().hex}"


@pytest.fixture
def queue(pm: Any, clock: FakeClock, store: str) -> Iterator[JobQueue]:
    """A queue on a fresh in-memory store (the facade's: it reads jobs as dicts too)."""
    with JobQueue(store, plugin_manager=pm, clock=clock) as opened:
        yield opened
