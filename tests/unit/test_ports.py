"""The storage port's roles and optional capabilities: each adapter conforms to `Storage`
and has exactly the capabilities it documents, found with isinstance."""

from __future__ import annotations

from pathlib import Path

import pytest

from gigq_core.memory import MemoryStorage
from gigq_core.ports import (
    CAPABILITIES,
    Backup,
    DeferredFinish,
    Diagnosable,
    IndependentHandles,
    PermissionChecked,
    Prefetch,
    Storage,
    Transfer,
    Upgradable,
)
from gigq_sqlite.storage import SqliteStorage


def capabilities(storage: object) -> set[str]:
    return {kind.__name__ for kind in CAPABILITIES if isinstance(storage, kind)}


def test_memory_has_the_storage_roles_and_only_transfer() -> None:
    storage = MemoryStorage()
    assert isinstance(storage, Storage)
    assert capabilities(storage) == {"Prefetch", "Transfer"}


def test_sqlite_has_every_capability(tmp_path: Path) -> None:
    storage = SqliteStorage(tmp_path / "jobs.db")
    try:
        assert isinstance(storage, Storage)
        assert capabilities(storage) == {
            kind.__name__
            for kind in (
                Backup,
                DeferredFinish,
                Diagnosable,
                IndependentHandles,
                PermissionChecked,
                Prefetch,
                Transfer,
                Upgradable,
            )
        }
    finally:
        storage.close()


@pytest.mark.parametrize("kind", CAPABILITIES, ids=lambda kind: kind.__name__)
def test_an_object_without_the_members_lacks_the_capability(kind: type) -> None:
    assert not isinstance(object(), kind)
