"""The settings chain: keyword > URL query > GIGQ_* environment > [tool.gigq] / gigq.toml."""

from __future__ import annotations

import pytest

from gigq_core import ConfigError, JobQueue, Worker
from gigq_core.settings import DEFAULTS, find_config, resolve, split_url


@pytest.fixture
def project(tmp_path, monkeypatch):
    """An empty project folder as the current directory."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write_pyproject(folder, body: str) -> None:
    (folder / "pyproject.toml").write_text(f'[project]\nname = "demo"\n\n[tool.gigq]\n{body}\n')


def open_queue(pm, clock, target, **settings):
    return JobQueue(target, plugin_manager=pm, clock=clock, **settings)


def test_defaults_without_any_source(project, pm, clock, store):
    with open_queue(pm, clock, f"memory://{store}") as queue:
        for key in ("lease", "heartbeat", "max_payload", "serializer", "durability"):
            assert queue.settings[key] == DEFAULTS[key]
    assert queue.settings["lease"] == 30.0
    assert queue.settings["heartbeat"] == 5.0
    assert queue.settings["max_payload"] == 1024 * 1024


def test_pyproject_tool_gigq_is_read_from_the_current_directory(project, pm, clock, store):
    write_pyproject(project, "lease = 40\nmax_payload = 2048")

    with open_queue(pm, clock, f"memory://{store}") as queue:
        assert queue.settings["lease"] == 40
        assert queue.settings["max_payload"] == 2048


def test_pyproject_is_found_in_a_parent_folder(project, monkeypatch, pm, clock, store):
    write_pyproject(project, "lease = 41")
    inner = project / "src" / "pkg"
    inner.mkdir(parents=True)
    monkeypatch.chdir(inner)

    with open_queue(pm, clock, f"memory://{store}") as queue:
        assert queue.settings["lease"] == 41


def test_pyproject_without_tool_gigq_is_skipped(project):
    write_pyproject(project, "lease = 43")
    inner = project / "inner"
    inner.mkdir()
    (inner / "pyproject.toml").write_text('[project]\nname = "inner"\n')

    path, table = find_config(inner)

    assert path == project / "pyproject.toml"
    assert table == {"lease": 43}


def test_gigq_toml_is_read_too(project, pm, clock, store):
    (project / "gigq.toml").write_text("lease = 42\n")

    with open_queue(pm, clock, f"memory://{store}") as queue:
        assert queue.settings["lease"] == 42


def test_environment_beats_pyproject(project, monkeypatch, pm, clock, store):
    write_pyproject(project, "lease = 40")
    monkeypatch.setenv("GIGQ_LEASE", "50")

    with open_queue(pm, clock, f"memory://{store}") as queue:
        assert queue.settings["lease"] == 50.0


def test_url_query_beats_environment(project, monkeypatch, pm, clock, store):
    write_pyproject(project, "lease = 40")
    monkeypatch.setenv("GIGQ_LEASE", "50")

    with open_queue(pm, clock, f"memory://{store}?lease=60") as queue:
        assert queue.settings["lease"] == 60.0
        assert queue.target == f"memory://{store}"


def test_keyword_beats_url_query(project, monkeypatch, pm, clock, store):
    write_pyproject(project, "lease = 40")
    monkeypatch.setenv("GIGQ_LEASE", "50")

    with open_queue(pm, clock, f"memory://{store}?lease=60", lease=70) as queue:
        assert queue.settings["lease"] == 70


def test_each_level_only_overrides_what_it_sets(project, monkeypatch, pm, clock, store):
    write_pyproject(project, "lease = 40\nheartbeat = 4\nmax_payload = 4096")
    monkeypatch.setenv("GIGQ_HEARTBEAT", "3")

    with open_queue(pm, clock, f"memory://{store}?max_payload=8192") as queue:
        assert queue.settings["lease"] == 40
        assert queue.settings["heartbeat"] == 3.0
        assert queue.settings["max_payload"] == 8192


def test_gigq_db_environment_names_the_default_target(project, monkeypatch, pm, clock, store):
    monkeypatch.setenv("GIGQ_DB", f"memory://{store}")

    with JobQueue(plugin_manager=pm, clock=clock) as queue:
        assert queue.target == f"memory://{store}"


def test_allowed_modules_from_the_environment(project, monkeypatch):
    monkeypatch.setenv("GIGQ_ALLOWED_MODULES", "tests.*, myapp.jobs")
    _, settings = resolve("memory://x")
    assert settings["allowed_modules"] == ("tests.*", "myapp.jobs")


def test_allowed_modules_from_pyproject_list(project):
    write_pyproject(project, 'allowed_modules = ["tests.*"]')
    _, settings = resolve("memory://x")
    assert settings["allowed_modules"] == ("tests.*",)


@pytest.mark.parametrize(("text", "value"), [("1", True), ("yes", True), ("off", False)])
def test_boolean_from_the_environment(project, monkeypatch, text, value):
    monkeypatch.setenv("GIGQ_ALLOW_INSECURE_PERMISSIONS", text)
    assert resolve("memory://x")[1]["allow_insecure_permissions"] is value


def test_unknown_settings_pass_through(project):
    write_pyproject(project, "my_plugin_option = 'x'")
    _, settings = resolve("memory://x?storage_thing=1", {"other": 2})
    assert settings["my_plugin_option"] == "x"
    assert settings["storage_thing"] == "1"
    assert settings["other"] == 2


def test_nested_tables_are_left_to_plugins(project):
    write_pyproject(project, "lease = 40\n\n[tool.gigq.cron]\nevery = 5")
    _, settings = resolve("memory://x")
    assert "cron" not in settings
    assert settings["lease"] == 40


def test_split_url():
    assert split_url("sqlite:///tmp/x.db?durability=normal&lease=3") == (
        "sqlite:///tmp/x.db",
        {"durability": "normal", "lease": "3"},
    )
    assert split_url("jobs.db") == ("jobs.db", {})


def test_worker_settings_follow_the_chain(project, monkeypatch, pm, clock, store):
    monkeypatch.setenv("GIGQ_POLLING_INTERVAL", "2.5")
    worker = Worker(f"memory://{store}?lease=20", heartbeat=2, plugin_manager=pm, clock=clock)

    assert worker.polling_interval == 2.5
    assert worker.lease == 20.0
    assert worker.heartbeat_interval == 2.0


# -- bad values ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value", "match"),
    [
        ("GIGQ_LEASE", "abc", "GIGQ_LEASE"),
        ("GIGQ_MAX_PAYLOAD", "1.5", "GIGQ_MAX_PAYLOAD"),
        ("GIGQ_CONCURRENCY", "many", "GIGQ_CONCURRENCY"),
        ("GIGQ_ALLOW_INSECURE_PERMISSIONS", "maybe", "GIGQ_ALLOW_INSECURE_PERMISSIONS"),
        ("GIGQ_DURABILITY", "sometimes", "durability"),
        ("GIGQ_LEASE", "0", "lease"),
    ],
)
def test_bad_environment_value_is_a_config_error(project, monkeypatch, variable, value, match):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=match):
        resolve("memory://x")


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"lease": 0}, "lease"),
        ({"lease": -1}, "lease"),
        ({"lease": "abc"}, "lease"),
        ({"heartbeat": 0}, "heartbeat"),
        ({"polling_interval": -1}, "polling_interval"),
        ({"sweep_interval": 0}, "sweep_interval"),
        ({"grace": -1}, "grace"),
        ({"heartbeat": 30, "lease": 30}, "shorter than"),
        ({"max_payload": 0}, "max_payload"),
        ({"max_payload": 16 * 1024 * 1024 + 1}, "max_payload"),
        ({"durability": "fast"}, "durability"),
    ],
)
def test_bad_keyword_value_is_a_config_error(project, pm, clock, store, settings, match):
    with pytest.raises(ConfigError, match=match):
        open_queue(pm, clock, f"memory://{store}", **settings)


def test_bad_url_value_is_a_config_error(project, pm, clock, store):
    with pytest.raises(ConfigError, match="the URL"):
        open_queue(pm, clock, f"memory://{store}?lease=soon")


def test_bad_pyproject_value_is_a_config_error(project):
    write_pyproject(project, 'lease = "soon"')
    with pytest.raises(ConfigError, match=r"pyproject\.toml"):
        resolve("memory://x")


def test_unreadable_pyproject_is_a_config_error(project):
    (project / "pyproject.toml").write_text("[tool.gigq\nlease = ")
    with pytest.raises(ConfigError, match="cannot read settings"):
        resolve("memory://x")


def test_max_payload_may_be_raised_to_16_mib(project, pm, clock, store):
    with open_queue(pm, clock, f"memory://{store}", max_payload=16 * 1024 * 1024) as queue:
        assert queue.settings["max_payload"] == 16 * 1024 * 1024


def test_unknown_serializer_is_a_config_error(project, pm, clock, store):
    with pytest.raises(ConfigError, match="serializer 'yaml'"):
        open_queue(pm, clock, f"memory://{store}?serializer=yaml")


def test_config_error_exit_code():
    assert ConfigError.exit_code == 78
