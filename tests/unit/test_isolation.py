"""What a job process keeps of its worker's environment (gigq_core._isolation)."""

from __future__ import annotations

import pytest

from gigq_core._isolation import clean_environment, without_credentials


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("jobs.db", "jobs.db"),
        ("/srv/q/jobs.db", "/srv/q/jobs.db"),
        ("postgresql://gigq@db/q", "postgresql://gigq@db/q"),
        ("postgresql://gigq:pw@db:5432/q", "postgresql://gigq@db:5432/q"),
        ("postgresql://:pw@db/q", "postgresql://db/q"),
        ("postgresql://gigq:p%40ss@db/q?sslmode=require", "postgresql://gigq@db/q?sslmode=require"),
        (
            "postgresql://db/q?password=pw&application_name=w",
            "postgresql://db/q?application_name=w",
        ),
        ("postgresql://db/q?sslpassword=pw", "postgresql://db/q"),
        ("postgresql://[::1/q", None),  # unreadable: cannot be told free of secrets
    ],
)
def test_without_credentials(target: str, expected: str | None) -> None:
    assert without_credentials(target) == expected


def test_clean_environment_keeps_settings_and_drops_the_rest_of_gigq() -> None:
    environ = {
        "PATH": "/usr/bin",
        "AWS_SECRET_ACCESS_KEY": "the user's own",
        "GIGQ_LEASE": "30",
        "GIGQ_ALLOWED_MODULES": "myapp.*",
        "GIGQ_DISABLE_PLUGINS": "*",
        "GIGQ_DB": "postgresql://gigq:pw@db/q",
        "GIGQ_NOTIFY_WEBHOOK_URL": "https://hooks.example.com/secret",
        "GIGQ_NOTIFY_HEADERS": "Authorization: Bearer t",
        "GIGQ_SOMETHING_TOKEN": "t",
    }
    clean_environment(environ)
    assert environ == {
        "PATH": "/usr/bin",
        "AWS_SECRET_ACCESS_KEY": "the user's own",
        "GIGQ_LEASE": "30",
        "GIGQ_ALLOWED_MODULES": "myapp.*",
        "GIGQ_DISABLE_PLUGINS": "*",
        "GIGQ_DB": "postgresql://gigq@db/q",
    }


def test_clean_environment_keeps_the_settings_plugins_declare() -> None:
    environ = {"GIGQ_DURABILITY": "normal", "GIGQ_REGION": "eu", "GIGQ_REGION_KEY": "k"}
    clean_environment(environ, plugin_settings=("durability", "region"))
    assert environ == {"GIGQ_DURABILITY": "normal", "GIGQ_REGION": "eu"}


def test_clean_environment_drops_an_unreadable_database_url() -> None:
    environ = {"GIGQ_DB": "postgresql://u:pw@[::1/q"}
    clean_environment(environ)
    assert environ == {}
