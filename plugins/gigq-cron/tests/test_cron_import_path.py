"""`gigq cron add` imports the function to check it, from the current directory too, as
`gigq submit` does (the root command no longer puts that directory on sys.path for all);
`gigq cron list` prints stored text escaped."""

from __future__ import annotations

import sys
import uuid

import pytest
from click.testing import CliRunner
from gigq_cli import create_cli


def test_cron_add_finds_a_function_in_the_current_directory(pm, store, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    module = f"local_tasks_{uuid.uuid4().hex}"
    (tmp_path / f"{module}.py").write_text("def tick():\n    return 1\n")

    result = CliRunner().invoke(
        create_cli(pm), ["--db", store, "cron", "add", "tick", "* * * * *", f"{module}:tick"]
    )

    assert result.exit_code == 0, result.output
    assert sys.path[-1] == str(tmp_path)  # appended: never in front of installed modules


@pytest.fixture(autouse=True)
def _forget_local_modules():
    yield
    for name in [n for n in sys.modules if n.startswith("local_tasks_")]:
        del sys.modules[name]


def test_cron_list_prints_stored_text_escaped(pm, tmp_path):
    from gigq.plugin import JobQueue

    from gigq_cron._schedules import Schedule, add_schedule

    # Schedule names are checked when added; a queue name is not.
    evil = "n\x1b]52;c;aGk=\x07\n\x9b2J\u202e"
    db = str(tmp_path / "cron.db")
    with JobQueue(db, plugin_manager=pm) as queue:
        schedule = Schedule(
            name="nightly", expression="* * * * *", function="cron_jobs:echo", queue=evil
        ).check()
        add_schedule(queue, schedule)

    listed = CliRunner().invoke(create_cli(pm), ["--db", db, "cron", "list"])

    assert listed.exit_code == 0, listed.output
    assert not any(c in listed.stdout for c in ("\x1b", "\x07", "\x9b", "\u202e"))
    assert "n\\x1b]52;c;aGk=\\x07\\n\\x9b2J\\u202e" in listed.stdout
    assert len(listed.stdout.splitlines()) == 3  # headers, rule, one schedule
