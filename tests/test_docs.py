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


#: A `pip install` line of a README, with its trailing comment.
_PIP = re.compile(r"^pip install (?P<args>[^#\n]+?)\s*(?:#\s*(?P<note>.*))?$", re.M)

#: The distributions in this repository; none is on PyPI.
_LOCAL = {"gigq", *(p.name for p in (ROOT / "plugins").iterdir() if p.is_dir())}


def _readmes() -> list[Path]:
    return [
        ROOT / "README.md",
        *ROOT.glob("plugins/*/README.md"),
        *ROOT.glob("examples/**/README.md"),
    ]


def test_readmes_install_only_what_can_be_installed_from_where_they_say() -> None:
    problems = []
    for readme in _readmes():
        for match in _PIP.finditer(readme.read_text()):
            args, note = match["args"].split(), match["note"] or ""
            if "-e" not in args:
                named = {a.split("[")[0] for a in args if not a.startswith("-")}
                if named & _LOCAL:
                    problems.append(f"{readme}: {match[0]!r} (not on PyPI)")
                continue
            target = args[args.index("-e") + 1].strip("'\"").split("[")[0]
            base = readme.parent if "this folder" in note else ROOT
            if not (base / target).is_dir():
                problems.append(f"{readme}: {match[0]!r}: no {target} from {base}")
    assert not problems, problems


def test_the_readme_says_that_ci_may_install_and_configure_postgresql() -> None:
    text = (ROOT / "README.md").read_text()
    paragraph = text[text.index("`.ci/run` does the same") :].split("\n\n", 1)[0]
    assert "apt-get" in paragraph and "PostgreSQL" in paragraph, paragraph
