"""Fixtures: the plugin registered on a fresh plugin manager, a queue with a fake clock."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from gigq.plugin import FakeClock, JobQueue, RecordingPlugin, make_plugin_manager

import gigq_example


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> None:
    """No GIGQ_* settings from the developer's environment."""
    for name in list(os.environ):
        if name.startswith("GIGQ_"):
            monkeypatch.delenv(name)


@pytest.fixture
def pm() -> Any:
    """A plugin manager with this plugin, registered without its entry point."""
    manager = make_plugin_manager(load_entrypoints=False)
    manager.register(gigq_example, name="example")
    return manager


@pytest.fixture
def rec(pm: Any) -> RecordingPlugin:
    """A plugin that records the lifecycle hook calls."""
    recording = RecordingPlugin()
    pm.register(recording, name="rec")
    return recording


@pytest.fixture
def queue(pm: Any) -> Iterator[JobQueue]:
    """A queue on a fresh in-memory store with a fake clock."""
    store = f"memory://example_{uuid.uuid4().hex}"
    with JobQueue(store, plugin_manager=pm, clock=FakeClock()) as opened:
        yield opened
