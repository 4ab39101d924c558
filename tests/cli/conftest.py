"""Fixtures for the CLI tests: a plugin manager, a SQLite file in tmp_path, and a runner."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pluggy
import pytest
from click.testing import CliRunner, Result

from gigq import JobQueue
from gigq_cli import create_cli
from gigq_core import make_plugin_manager

Run = Callable[..., Result]


@pytest.fixture
def pm() -> pluggy.PluginManager:
    """A fresh plugin manager (built-ins only; the SQLite plugin is a built-in)."""
    return make_plugin_manager(load_entrypoints=False)


@pytest.fixture
def db(tmp_path: Path) -> str:
    """The path of a database file that does not exist yet."""
    return str(tmp_path / "jobs.db")


@pytest.fixture(autouse=True)
def _restore_gigq_logger() -> Iterator[None]:
    """`gigq worker` sets up logging onto the runner's stderr; undo it after each test."""
    logger = logging.getLogger("gigq")
    handlers, level = list(logger.handlers), logger.level
    yield
    logger.handlers[:] = handlers
    logger.setLevel(level)


@pytest.fixture
def gigq(pm: pluggy.PluginManager, db: str) -> Run:
    """Run `gigq --db <db> ARGS...` in-process; `db=` picks another target, None none."""

    def run(*args: str, db: str | None = db, env: dict[str, str] | None = None) -> Result:
        prefix = ["--db", db] if db is not None else []
        return CliRunner().invoke(create_cli(pm), [*prefix, *args], env=env)

    return run


@pytest.fixture
def queue(pm: pluggy.PluginManager, db: str) -> Iterator[JobQueue]:
    """The queue of `db`, created."""
    with JobQueue(db, plugin_manager=pm) as jobs:
        yield jobs
