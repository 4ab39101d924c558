"""Guard: the SQL layer is driver-free (it imports gigq_core only), and the core imports no
part of it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

DRIVERS = ("sqlite3", "_sqlite3", "psycopg", "gigq_sqlite", "gigq_postgres", "gigq_cli")
MODULES = (
    "gigq_sql",
    "gigq_sql.connection",
    "gigq_sql.dialect",
    "gigq_sql.rows",
    "gigq_sql.insert",
    "gigq_sql.lifecycle",
    "gigq_sql.requeue",
    "gigq_sql.queries",
    "gigq_sql.export",
    "gigq_sql.storage",
    "gigq_sql.options",
    "gigq_sql.sqlite",
    "gigq_sql.postgresql",
)


def loaded_after(statement: str, names: tuple[str, ...]) -> list[str]:
    code = (
        "import json, sys\n"
        f"{statement}\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {names!r})))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=50, check=False
    )
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout))


@pytest.mark.timeout(60)
def test_the_sql_layer_loads_no_driver_and_no_adapter() -> None:
    assert loaded_after("import " + ", ".join(MODULES), DRIVERS) == []


@pytest.mark.timeout(60)
def test_the_core_loads_no_part_of_the_sql_layer() -> None:
    assert loaded_after("import gigq_core", ("gigq_sql",)) == []
