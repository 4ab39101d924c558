"""URL and options parsing, the hook, and the packaging of the plugin."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

import gigq_postgres
from gigq_core.errors import ConfigError
from gigq_postgres._options import mask_password, parse

HERE = Path(__file__).resolve().parent


def test_defaults():
    settings = parse("postgresql://u@db.example:5433/jobs", {})

    assert settings.schema == "gigq"
    assert settings.pool_size == 4
    assert settings.durability == "full"
    assert settings.create is True and settings.read_only is False
    assert settings.where == "db.example:5433/jobs"
    assert settings.conninfo.startswith("postgresql://u@db.example:5433/jobs?")
    assert "application_name=gigq" in settings.conninfo


def test_the_plugin_declares_the_settings_of_gigq_s_chain_it_reads():
    declared = gigq_postgres.gigq_settings()

    assert {name: option.default for name, option in declared.items()} == {
        "durability": "full",
        "busy_timeout": 30.0,
    }
    settings = parse("postgresql://h/db", {})
    assert (settings.durability, settings.busy_timeout) == ("full", 30.0)


def test_schema_from_the_url_query_or_the_options_which_win():
    assert parse("postgresql://h/db?schema=a", {}).schema == "a"
    assert parse("postgresql://h/db?schema=a", {"schema": "b"}).schema == "b"


def test_gigq_settings_never_reach_libpq_but_libpq_keywords_do():
    settings = parse(
        "postgres://h/db?schema=s&durability=normal&sslmode=disable",
        {"lease": 2.0, "busy_timeout": 5, "db": "x", "connect_timeout": 3},
    )

    assert settings.durability == "normal"
    assert settings.busy_timeout == 5.0
    query = settings.conninfo.partition("?")[2]
    assert sorted(query.split("&")) == [
        "application_name=gigq",
        "connect_timeout=3",
        "sslmode=disable",
    ]


def test_the_password_is_masked_in_messages():
    url = "postgresql://user:s3cret@h:5432/db?schema=x"

    settings = parse(url, {})

    assert settings.display_url == "postgresql://user:***@h:5432/db?schema=x"
    assert "s3cret" in settings.conninfo
    assert mask_password("postgresql://h/db") == "postgresql://h/db"


@pytest.mark.parametrize(
    ("options", "word"),
    [
        ({"durability": "fast"}, "durability"),
        ({"pool_size": 0}, "pool_size"),
        ({"busy_timeout": "soon"}, "busy_timeout"),
        ({"create": "maybe"}, "create"),
        ({"schema": ""}, "schema"),
        ({"schema": "x" * 64}, "schema"),
    ],
)
def test_bad_options_are_config_errors(options, word):
    with pytest.raises(ConfigError, match=word):
        parse("postgresql://h/db", options)


def test_the_hook_answers_only_postgres_urls():
    assert gigq_postgres.gigq_storage(url="sqlite:///x.db", options={}) is None
    assert gigq_postgres.gigq_storage(url="memory://x", options={}) is None
    assert gigq_postgres.gigq_storage(url="jobs.db", options={}) is None


def test_importing_the_plugin_loads_neither_psycopg_nor_the_adapter():
    import subprocess
    import sys

    code = (
        "import sys, gigq_postgres; "
        "print(sorted(m for m in sys.modules if m.startswith(('psycopg', 'gigq_postgres.'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(HERE.parent / "src"), "PATH": "/usr/bin:/bin"},
    )
    assert out.stdout.strip() == "[]"


def test_the_entry_point_names_the_module():
    with open(HERE.parent / "pyproject.toml", "rb") as handle:
        project = tomllib.load(handle)["project"]

    assert project["name"] == "gigq-postgres"
    assert "gigq" in project["dependencies"]
    assert project["entry-points"]["gigq"] == {"postgres": "gigq_postgres"}


def test_the_url_for_messages_names_a_schema_given_outside_the_url():
    assert parse("postgresql://h/db", {"schema": "jobs"}).display_url == (
        "postgresql://h/db?schema=jobs"
    )
    assert parse("postgresql://h/db", {}).display_url == "postgresql://h/db"
