"""What `gigq worker --reload` watches and forgets (gigq_core.reload)."""

from __future__ import annotations

import json
import sys
import sysconfig
from pathlib import Path

import attrs
import pytest

import gigq_core
from gigq_core import reload


def test_code_folders_are_the_user_s_not_the_interpreter_s(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project, src, other = tmp_path / "project", tmp_path / "project" / "src", tmp_path / "lib"
    for folder in (src, other):
        folder.mkdir(parents=True)
    monkeypatch.chdir(project)
    paths = [
        "",  # the current directory
        str(src),  # inside it: watched with it
        str(other),  # an editable install's source folder, say
        sysconfig.get_paths()["stdlib"],
        sysconfig.get_paths()["purelib"],
        str(tmp_path / "elsewhere" / "site-packages"),
        str(tmp_path / "missing"),
        str(tmp_path / "lib.zip"),
    ]
    (tmp_path / "elsewhere" / "site-packages").mkdir(parents=True)
    assert reload.code_folders(paths) == [str(project.resolve()), str(other.resolve())]


def test_forget_modules_drops_only_the_user_s_modules_under_the_folders(tmp_path: Path) -> None:
    (tmp_path / "reload_probe_mod.py").write_text("VALUE = 1\n")
    sys.path.insert(0, str(tmp_path))
    try:
        import reload_probe_mod  # type: ignore[import-not-found]

        assert reload_probe_mod.VALUE == 1
        dropped = reload.forget_modules([str(tmp_path.resolve())])
        assert dropped == ["reload_probe_mod"]
        assert "reload_probe_mod" not in sys.modules
        # GigQ's own, the standard library and installed packages stay, whatever the folder.
        folders = [str(Path(m.__file__).resolve().parent) for m in (gigq_core, json, attrs)]
        assert reload.forget_modules(folders) == []
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("reload_probe_mod", None)
