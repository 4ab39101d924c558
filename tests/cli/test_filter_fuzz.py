"""CLI filters fuzzed with arbitrary text: exit 0, 1 or 2 only, no traceback, nothing changed
(docs/guarantees.md)."""

from __future__ import annotations

import collections
from collections.abc import Iterator

import pluggy
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from gigq_cli import create_cli
from gigq_core import JobQueue, JobStatus

from .helpers import submit

TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["'", '"', "; DROP TABLE jobs; --", "%", "_", "\\", "\x00", "a" * 5000]),
)
STATES = {s.value for s in JobStatus}


#: Invocations and their exit codes, for the one-line summary.
TALLY: collections.Counter[str] = collections.Counter()


@pytest.fixture
def summary() -> Iterator[None]:
    """Prints the fuzzing's one-line summary once its examples are done."""
    TALLY.clear()
    yield
    codes = ",".join(f"{code}={TALLY[code]}" for code in sorted(TALLY) if code != "runs")
    print(f"[cli fuzz] invocations={TALLY['runs']} exit_codes={codes} tracebacks=0 changed=0")


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=TEXT, option=st.sampled_from(["--status", "--queue", "--name"]))
def test_filters_never_crash_or_change_anything(
    pm: pluggy.PluginManager, queue: JobQueue, db: str, summary: None, value: str, option: str
) -> None:
    assume(value not in STATES | {"fixed-name", "fixed-queue"})
    if not queue.stats()["total"]:
        submit(queue, name="fixed-name", queue="fixed-queue")
    before = queue.stats()
    cli = create_cli(pm)
    for command in (["list"], ["cancel"], ["requeue"], ["clear"]):
        args = ["--db", db, *command, option, value]
        if command == ["clear"]:
            args = ["--db", db, "clear", "--status", value]
        result = CliRunner().invoke(cli, args)
        assert result.exit_code in (0, 1, 2), (args, result.output)
        assert result.exception is None or isinstance(result.exception, SystemExit), args
        assert "Traceback" not in result.stderr
        TALLY["runs"] += 1
        TALLY[str(result.exit_code)] += 1
    assert queue.stats() == before
