"""Fixtures of the storage contract suite: every test runs on every adapter.

The `storage` fixture is parametrized over the in-memory adapter, a SQLite file in
`tmp_path`, and every URL given with `--storage-url` (so a storage plugin's CI runs this
same suite on its backend). Adapters are opened the way the core opens them, through
`gigq_core.plugins.open_storage`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gigq_core.ports import Storage
from gigq_core.records import JobRecord
from gigq_core.testing import FakeClock
from tests.contract._factory import job_record

BUILTIN_TARGETS = ("memory", "sqlite")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run every test that uses `storage` once per adapter."""
    if "storage_target" in metafunc.fixturenames:
        extra = list(metafunc.config.getoption("storage_url"))
        # Test ids name the scheme only: a URL may carry a password.
        extra_ids = [f"{url.partition('://')[0]}-{n}" for n, url in enumerate(extra, 1)]
        metafunc.parametrize(
            "storage_target", [*BUILTIN_TARGETS, *extra], ids=[*BUILTIN_TARGETS, *extra_ids]
        )


@pytest.fixture(scope="session")
def plugin_manager() -> Any:
    """A fresh plugin manager for the suite (never the process default)."""
    from gigq_core.plugins import make_plugin_manager

    return make_plugin_manager()


@pytest.fixture
def target(storage_target: str, tmp_path: Path) -> str:
    """The path or URL of this test's store (a fresh one per test)."""
    unique = f"contract_{uuid.uuid4().hex[:12]}"
    if storage_target == "memory":
        return f"memory://{unique}"
    if storage_target == "sqlite":
        return str(tmp_path / "jobs.db")
    return storage_target.replace("{name}", unique)


@pytest.fixture
def open_target(
    storage_target: str, target: str, plugin_manager: Any
) -> Iterator[Callable[[], Storage]]:
    """Open a storage object on this test's store; each is closed after the test.

    Several objects on one store stand for several processes sharing it.
    """
    from gigq_core.plugins import open_storage

    opened: list[Storage] = []

    def open_one() -> Storage:
        if storage_target in BUILTIN_TARGETS:
            store = open_storage(target, None, pm=plugin_manager)
        else:
            failure = None
            try:
                store = open_storage(target, None, pm=plugin_manager)
            except Exception as err:  # any failure to open becomes one clear message below
                failure = f"{type(err).__name__}: {err}"
            if failure is not None:
                # A backend given on the command line that cannot be reached is a failure,
                # never a silent skip: its CI would otherwise pass without testing anything.
                scheme = storage_target.partition("://")[0]
                pytest.fail(
                    f"cannot open the {scheme}:// storage under test: {failure}", pytrace=False
                )
        opened.append(store)
        return store

    try:
        yield open_one
    finally:
        for store in reversed(opened):
            store.close()


@pytest.fixture
def storage(open_target: Callable[[], Storage]) -> Storage:
    """An empty storage of the adapter under test, closed after the test."""
    return open_target()


@pytest.fixture
def clock() -> FakeClock:
    """A fake clock, starting at 2030-01-01 UTC."""
    return FakeClock()


@pytest.fixture
def make_job(clock: FakeClock) -> Callable[..., JobRecord]:
    """Build a valid JobRecord submitted at the clock's current time (see `job_record`)."""

    def make(**overrides: Any) -> JobRecord:
        return job_record(clock.now(), **overrides)

    return make
