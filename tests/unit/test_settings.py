"""The settings chain: keyword > URL query > GIGQ_* environment > [tool.gigq] / gigq.toml."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gigq_core import ConfigError, JobQueue, Worker, hookimpl
from gigq_core.memory import MemoryStorage
from gigq_core.plugins import Hooks
from gigq_core.settings import DEFAULTS, Settings, find_config, resolve, split_url
from gigq_sqlite.plugin import OPTIONS as SQLITE_OPTIONS


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
        for key in ("lease", "heartbeat", "max_payload", "serializer"):
            assert getattr(queue.settings, key) == DEFAULTS[key]
        assert queue.settings.options["durability"] == SQLITE_OPTIONS["durability"].default
    assert queue.settings.lease == 30.0
    assert queue.settings.heartbeat == 5.0
    assert queue.settings.max_payload == 1024 * 1024


def test_pyproject_tool_gigq_is_read_from_the_current_directory(project, pm, clock, store):
    write_pyproject(project, "lease = 40\nmax_payload = 2048")

    with open_queue(pm, clock, f"memory://{store}") as queue:
        assert queue.settings.lease == 40
        assert queue.settings.max_payload == 2048


def test_pyproject_is_found_in_a_parent_folder(project, monkeypatch, pm, clock, store):
    write_pyproject(project, "lease = 41")
    inner = project / "src" / "pkg"
    inner.mkdir(parents=True)
    monkeypatch.chdir(inner)

    with open_queue(pm, clock, f"memory://{store}") as queue:
        assert queue.settings.lease == 41


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
        assert queue.settings.lease == 42


def test_environment_beats_pyproject(project, monkeypatch, pm, clock, store):
    write_pyproject(project, "lease = 40")
    monkeypatch.setenv("GIGQ_LEASE", "50")

    with open_queue(pm, clock, f"memory://{store}") as queue:
        assert queue.settings.lease == 50.0


def test_url_query_beats_environment(project, monkeypatch, pm, clock, store):
    write_pyproject(project, "lease = 40")
    monkeypatch.setenv("GIGQ_LEASE", "50")

    with open_queue(pm, clock, f"memory://{store}?lease=60") as queue:
        assert queue.settings.lease == 60.0
        assert queue.target == f"memory://{store}"


def test_keyword_beats_url_query(project, monkeypatch, pm, clock, store):
    write_pyproject(project, "lease = 40")
    monkeypatch.setenv("GIGQ_LEASE", "50")

    with open_queue(pm, clock, f"memory://{store}?lease=60", lease=70) as queue:
        assert queue.settings.lease == 70


def test_each_level_only_overrides_what_it_sets(project, monkeypatch, pm, clock, store):
    write_pyproject(project, "lease = 40\nheartbeat = 4\nmax_payload = 4096")
    monkeypatch.setenv("GIGQ_HEARTBEAT", "3")

    with open_queue(pm, clock, f"memory://{store}?max_payload=8192") as queue:
        assert queue.settings.lease == 40
        assert queue.settings.heartbeat == 3.0
        assert queue.settings.max_payload == 8192


def test_gigq_db_environment_names_the_default_target(project, monkeypatch, pm, clock, store):
    monkeypatch.setenv("GIGQ_DB", f"memory://{store}")

    with JobQueue(plugin_manager=pm, clock=clock) as queue:
        assert queue.target == f"memory://{store}"


def test_allowed_modules_from_the_environment(project, monkeypatch):
    monkeypatch.setenv("GIGQ_ALLOWED_MODULES", "tests.*, myapp.jobs")
    _, settings = resolve("memory://x")
    assert settings.allowed_modules == ("tests.*", "myapp.jobs")


def test_allowed_modules_from_pyproject_list(project):
    write_pyproject(project, 'allowed_modules = ["tests.*"]')
    _, settings = resolve("memory://x")
    assert settings.allowed_modules == ("tests.*",)


@pytest.mark.parametrize(("text", "value"), [("1", True), ("yes", True), ("off", False)])
def test_boolean_from_the_environment(project, monkeypatch, text, value):
    monkeypatch.setenv("GIGQ_ALLOW_INSECURE_PERMISSIONS", text)
    assert resolve("memory://x")[1].allow_insecure_permissions is value


def test_unknown_settings_pass_through(project):
    write_pyproject(project, "my_plugin_option = 'x'")
    _, settings = resolve("memory://x?storage_thing=1", {"other": 2})
    assert settings.options["my_plugin_option"] == "x"
    assert settings.options["storage_thing"] == "1"
    assert settings.options["other"] == 2
    assert settings.as_dict()["other"] == 2


def test_nested_tables_are_left_to_plugins(project):
    write_pyproject(project, "lease = 40\n\n[tool.gigq.cron]\nevery = 5")
    _, settings = resolve("memory://x")
    assert "cron" not in settings.as_dict()
    assert settings.lease == 40


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
def test_bad_environment_value_is_a_config_error(project, monkeypatch, pm, variable, value, match):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=match):
        resolve("memory://x", declared=Hooks(pm).settings())


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
        ({"leftover_grace": -1}, "leftover_grace"),
        ({"kill_leftovers": 2}, "kill_leftovers"),
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
        assert queue.settings.max_payload == 16 * 1024 * 1024


def test_unknown_serializer_is_a_config_error(project, pm, clock, store):
    with pytest.raises(ConfigError, match="serializer 'yaml'"):
        open_queue(pm, clock, f"memory://{store}?serializer=yaml")


def test_config_error_exit_code():
    assert ConfigError.exit_code == 78


# -- typed settings, and the settings plugins declare ---------------------------------------


def test_settings_are_attributes_of_a_frozen_checked_record():
    settings = Settings()

    assert settings.lease == 30.0
    assert dict(settings.options) == {}
    with pytest.raises(AttributeError):
        settings.lease = 5
    with pytest.raises(ConfigError, match="setting 'lease'"):
        Settings(lease=0)


def test_the_core_names_no_storage_option():
    for name in SQLITE_OPTIONS:
        assert name not in DEFAULTS


def test_sqlite_options_are_declared_by_its_plugin(pm):
    declared = Hooks(pm).settings()

    assert {name: declared[name].default for name in SQLITE_OPTIONS} == {
        "durability": "full",
        "busy_timeout": 30.0,
        "journal_size_limit": 64 * 1024 * 1024,
        "checkpoint_threshold": 32 * 1024 * 1024,
        "create_folders": False,
    }


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("environment", {"durability": "normal", "journal_size_limit": 1024}),
        ("url", {"durability": "normal", "journal_size_limit": 1024, "busy_timeout": 2.5}),
        ("pyproject", {"busy_timeout": 5, "checkpoint_threshold": 2048}),
        ("keyword", {"durability": "normal", "busy_timeout": 2.5}),
    ],
)
def test_storage_options_come_through_every_level(
    project, monkeypatch, pm, clock, store, source, expected
):
    seen = []

    class Storage:
        @hookimpl
        def gigq_storage(self, url, options):
            seen.append(options)
            return MemoryStorage(store) if url.startswith("capture://") else None

    pm.register(Storage(), name="capture")
    target, keywords = "capture://x", {}
    if source == "environment":
        for key, value in expected.items():
            monkeypatch.setenv(f"GIGQ_{key.upper()}", str(value))
    elif source == "url":
        target += "?" + "&".join(f"{key}={value}" for key, value in expected.items())
    elif source == "pyproject":
        write_pyproject(project, "\n".join(f"{k} = {v}" for k, v in expected.items()))
    else:
        keywords = expected

    with open_queue(pm, clock, target, **keywords) as queue:
        for key, default in SQLITE_OPTIONS.items():
            value = expected.get(key, default.default)
            assert queue.settings.options[key] == value
            assert seen[0][key] == value
            if source in ("environment", "url"):  # text, read as the default's type
                assert type(queue.settings.options[key]) is type(default.default)
        assert seen[0]["lease"] == 30.0


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        (
            "GIGQ_BUSY_TIMEOUT",
            "soon",
            "setting 'busy_timeout' from GIGQ_BUSY_TIMEOUT must be a float, got 'soon'",
        ),
        (
            "GIGQ_BUSY_TIMEOUT",
            "0",
            "setting 'busy_timeout' must be a positive number of seconds up to 1e+09, got 0.0",
        ),
        (
            "GIGQ_JOURNAL_SIZE_LIMIT",
            "big",
            "setting 'journal_size_limit' from GIGQ_JOURNAL_SIZE_LIMIT must be a int, got 'big'",
        ),
        (
            "GIGQ_DURABILITY",
            "fast",
            "setting 'durability' must be 'full' or 'normal', got 'fast'",
        ),
    ],
)
def test_bad_storage_option_messages(
    project, monkeypatch, pm, clock, store, variable, value, message
):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        open_queue(pm, clock, f"memory://{store}")
    assert str(caught.value) == message


def test_a_worker_checks_its_overrides_of_declared_settings(project, pm, clock, store):
    with open_queue(pm, clock, f"memory://{store}") as queue:
        with pytest.raises(ConfigError, match="setting 'durability'"):
            Worker(queue, durability="fast")
        worker = Worker(queue, durability="normal", lease=40)
        assert worker.settings.options["durability"] == "normal"
        assert worker.settings.lease == 40
        assert queue.settings.lease == 30.0


def test_the_readme_lists_every_setting_and_marks_the_storage_s():
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = text.split("### Settings", 1)[1].split("\n### ", 1)[0]
    core, storage = section.split("| SQLite storage setting |", 1)

    assert sorted(re.findall(r"^\| `(\w+)` \|", core, re.M)) == sorted(DEFAULTS)
    assert sorted(re.findall(r"^\| `(\w+)` \|", storage, re.M)) == sorted(SQLITE_OPTIONS)
