"""The documents stay true: every test that docs/guarantees.md names as the proof of a
promise exists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GUARANTEES = ROOT / "docs" / "guarantees.md"

#: `tests/...py` or `tests/...py::name` (or a plugin's `plugins/NAME/tests/...`) in backticks.
_REFERENCE = re.compile(r"`((?:plugins/[\w-]+/)?tests/[\w/]+\.py)(?:::(\w+))?`")


def _names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
    }


def test_every_test_the_guarantees_name_exists() -> None:
    references = _REFERENCE.findall(GUARANTEES.read_text())
    assert len(references) >= 30, "the guarantees page names too few tests"
    missing = []
    for file, name in references:
        path = ROOT / file
        if not path.is_file():
            missing.append(file)
        elif name and name not in _names(path):
            missing.append(f"{file}::{name}")
    assert not missing, f"docs/guarantees.md names tests that do not exist: {missing}"
