"""The root storage contract suite (tests/contract), run here on PostgreSQL.

Every module of the suite comes in unchanged (but the SQLite-specific one); this folder's
conftest gives its tests their `storage`, `open_target`, `clock` and `make_job` fixtures on
this run's schema, emptied before each test. (The root suite also runs on PostgreSQL with
`--storage-url`; see the README.)
"""

from __future__ import annotations

import importlib
from pathlib import Path

import tests.contract

#: Contract modules about one adapter only.
ADAPTER_SPECIFIC = frozenset({"test_sqlite_specific"})


def _collect() -> None:
    """Bring every test and fixture of the contract modules into this module (they keep
    their own modules' globals); a name that two modules bind to different objects would
    hide one of them, so it fails the collection instead."""
    origin: dict[str, str] = {}
    folder = Path(next(iter(tests.contract.__path__)))
    for path in sorted(folder.glob("test_*.py")):
        if path.stem in ADAPTER_SPECIFIC:
            continue
        module = importlib.import_module(f"tests.contract.{path.stem}")
        for name, value in vars(module).items():
            is_fixture = hasattr(value, "_fixture_function_marker")
            if not (name.startswith("test_") or is_fixture):
                continue
            if name in origin and globals()[name] is not value:
                raise RuntimeError(f"{name} is defined by {origin[name]} and {path.stem}")
            origin.setdefault(name, path.stem)
            globals()[name] = value


_collect()
