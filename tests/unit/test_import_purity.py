"""Guard: importing the core (and the facade) loads no adapter, CLI or table library."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

FORBIDDEN = ("sqlite3", "_sqlite3", "click", "tabulate", "gigq_sqlite", "gigq_cli")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("module", ["gigq_core", "gigq", "gigq.plugin"])
def test_import_loads_no_adapter_cli_or_tabulate(module):
    code = (
        "import json, sys\n"
        f"import {module}\n"
        f"print(json.dumps(sorted(m for m in {FORBIDDEN!r} if m in sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=50, check=False
    )

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []


@pytest.mark.timeout(60)
def test_import_gigq_core_does_not_scan_entry_points_or_build_a_plugin_manager():
    code = "import gigq_core.plugins as p\nimport gigq_core\nprint(p._default is None)\n"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=50, check=False
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"
