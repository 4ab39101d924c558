"""Shared test configuration: hypothesis profiles and the `--storage-url` option."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import settings

from tests.reliability._audit import WriteAudit

# Storage is involved in most property tests, and its timing varies too much for deadlines.
settings.register_profile("default", max_examples=50, deadline=None)
settings.register_profile("ci", max_examples=500, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add `--storage-url`, so a storage plugin's CI runs the contract suite on its backend."""
    parser.addoption(
        "--storage-url",
        action="append",
        default=[],
        metavar="URL",
        help=(
            "also run the storage contract suite on this storage URL (repeatable); "
            "a '{name}' in the URL is replaced by a name unique to each test, "
            "otherwise the URL must give an empty store to every test"
        ),
    )


@pytest.fixture(autouse=True)
def write_audit(monkeypatch: pytest.MonkeyPatch) -> Iterator[WriteAudit]:
    """The BEGIN IMMEDIATE audit (docs/guarantees.md) on every connection gigq_sqlite
    opens in this process: a write outside BEGIN IMMEDIATE fails the test that made it.
    (Workers started as subprocesses are audited by tests/reliability/test_begin_immediate.)"""
    from gigq_sqlite import _connection

    audit = WriteAudit()
    monkeypatch.setattr(_connection, "open_connection", audit.wrap(_connection.open_connection))
    yield audit
    assert not audit.violations, "writes outside BEGIN IMMEDIATE: " + "; ".join(
        f"{v.transaction}: {v.sql.strip()[:120]}" for v in audit.violations[:5]
    )
