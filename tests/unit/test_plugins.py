"""Issue 6, the core side of plugins: one `test_hook_<name>` per hook spec (and a guard that
fails when one is missing), isolation of raising hooks, plugins that fail to load,
GIGQ_DISABLE_PLUGINS, and every first-party plugin registered with `check_pending()`."""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import json
import logging
import sys
import threading
import tomllib
import uuid
from datetime import datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from gigq_cli import create_cli
from gigq_core import ConfigError, ErrorInfo, Job, JobQueue, JobRecord, Worker, hookimpl
from gigq_core import hookspecs as specs_module
from gigq_core.memory import MemoryStorage
from gigq_core.plugins import Hooks, make_plugin_manager
from gigq_core.records import JobStatus
from gigq_core.settings import Option
from gigq_core.testing import RecordingPlugin
from tests import jobs

ROOT = Path(__file__).resolve().parents[2]


def hook_specs() -> list[str]:
    """The name of every hook spec in gigq_core/hookspecs.py."""
    return sorted(
        name
        for name, value in vars(specs_module).items()
        if name.startswith("gigq_") and hasattr(value, f"{specs_module.NAME}_spec")
    )


def calls_of(rec: RecordingPlugin, hook: str) -> list[dict]:
    """The keyword arguments of every recorded call of `hook`."""
    return [kwargs for name, kwargs in rec.kwargs if name == hook]


# -- guards --------------------------------------------------------------------------------


def test_every_hook_spec_has_a_test():
    tests = {name for name in globals() if name.startswith("test_hook_")}
    missing = [name for name in hook_specs() if f"test_hook_{name}" not in tests]

    assert len(hook_specs()) >= 14
    assert not missing, f"hook specs without a test_hook_<name> test here: {missing}"


def test_every_hook_spec_is_documented_in_the_plugin_guide():
    guide = (ROOT / "plugins" / "README.md").read_text(encoding="utf-8")
    missing = []
    for name in hook_specs():
        spec = getattr(specs_module, name)
        signature = f"{name}({', '.join(inspect.signature(spec).parameters)})"
        if signature not in guide:
            missing.append(signature)

    assert not missing, f"plugins/README.md does not list: {missing}"


def test_every_hook_spec_has_a_one_line_docstring_and_a_gigq_name():
    for name in hook_specs():
        doc = getattr(specs_module, name).__doc__
        assert doc and doc.strip(), name


# -- lifecycle hooks -----------------------------------------------------------------------


def test_hook_gigq_job_submitted(queue, rec):
    job_id = queue.submit(Job("add", jobs.add, params={"a": 1, "b": 2}, priority=4))
    queue.submit(Job("dup", jobs.noop, unique_key="k"))
    queue.submit(Job("dup", jobs.noop, unique_key="k"))  # deduplicated: fires nothing

    (first, second) = calls_of(rec, "gigq_job_submitted")
    job = first["job"]
    assert isinstance(job, JobRecord)
    assert (job.id, job.name, job.priority, job.status) == (job_id, "add", 4, JobStatus.PENDING)
    assert json.loads(job.params) == {"a": 1, "b": 2}
    assert second["job"].unique_key == "k"


def test_hook_gigq_job_started(queue, worker, rec):
    job_id = queue.submit(Job("f", jobs.fail_until, params={"attempts": 1}, retry_delay=0))
    worker.process_one()
    worker.process_one()

    started = calls_of(rec, "gigq_job_started")
    assert [(c["job"].id, c["attempt"], c["worker_id"]) for c in started] == [
        (job_id, 1, "w1"),
        (job_id, 2, "w1"),
    ]
    assert started[0]["job"].status is JobStatus.RUNNING
    assert started[0]["job"].worker_id == "w1"


def test_hook_gigq_job_succeeded(queue, worker, rec):
    job_id = queue.submit(Job("add", jobs.add, params={"a": 2, "b": 5}))
    worker.process_one()

    (call,) = calls_of(rec, "gigq_job_succeeded")
    assert call["job"].id == job_id
    assert call["job"].status is JobStatus.COMPLETED
    assert call["result"] == 7
    assert isinstance(call["duration"], float) and call["duration"] >= 0


def test_hook_gigq_job_failed(queue, worker, rec, clock):
    job_id = queue.submit(Job("f", jobs.fail, params={"message": "no"}, max_attempts=2))
    worker.process_one()
    clock.advance(3600)
    worker.process_one()
    # A rescue fires it too, in the rescuing worker, with "worker lost".
    lost = queue.submit(Job("lost", jobs.noop, max_attempts=1))
    queue.storage.claim("ghost", 1, clock.now(), 30)
    clock.advance(31)
    worker.rescue()

    calls = calls_of(rec, "gigq_job_failed")
    assert [(c["job"].id, c["final"]) for c in calls] == [
        (job_id, False),
        (job_id, True),
        (lost, True),
    ]
    assert calls[0]["error"] == ErrorInfo(
        type="ValueError", message="no", traceback=calls[0]["error"].traceback
    )
    assert "Traceback" in calls[0]["error"].traceback
    assert calls[1]["job"].status is JobStatus.FAILED
    assert (calls[2]["error"].type, calls[2]["error"].message) == ("WorkerLost", "worker lost")


def test_hook_gigq_job_retrying(queue, worker, rec):
    job_id = queue.submit(Job("f", jobs.fail, max_attempts=3, retry_delay=7))
    worker.process_one()

    (call,) = calls_of(rec, "gigq_job_retrying")
    assert call["job"].id == job_id
    assert call["job"].status is JobStatus.PENDING
    assert call["delay"] == 7
    assert call["error"].type == "ValueError"
    assert rec.names()[-2:] == ["gigq_job_failed", "gigq_job_retrying"]


def test_hook_gigq_job_cancelled(queue, rec):
    parent = queue.submit(Job("p", jobs.noop))
    child = queue.submit(Job("c", jobs.noop, dependencies=[parent]))
    queue.cancel(parent)

    calls = calls_of(rec, "gigq_job_cancelled")
    assert [c["job"].id for c in calls] == [parent, child]
    assert calls[0]["reason"] == "cancelled by user"
    assert parent in calls[1]["reason"]
    assert all(c["job"].status is JobStatus.CANCELLED for c in calls)


@pytest.mark.timeout(30)
def test_hook_gigq_job_timed_out(queue, worker, clock, rec):
    key = uuid.uuid4().hex
    jobs.CLOCKS[key] = clock
    try:
        job_id = queue.submit(
            Job(
                "slow",
                jobs.overrun,
                params={"clock": key, "seconds": 11},
                timeout=10,
                max_attempts=2,
                retry_delay=0,
            )
        )
        worker.process_one()
        worker.process_one()
    finally:
        del jobs.CLOCKS[key]

    calls = calls_of(rec, "gigq_job_timed_out")
    assert [(c["job"].id, c["final"]) for c in calls] == [(job_id, False), (job_id, True)]
    assert calls[1]["job"].status is JobStatus.TIMEOUT
    # A timeout with attempts left is followed by gigq_job_retrying.
    assert rec.names()[2:4] == ["gigq_job_timed_out", "gigq_job_retrying"]


class StopWhen:
    """Stops `worker` from inside one hook."""

    def __init__(self, worker: Worker, hook: str) -> None:
        self.worker = worker
        self.hook = hook
        self.ticks: list[dict] = []

    @hookimpl
    def gigq_worker_started(self, worker_id):
        if self.hook == "gigq_worker_started":
            self.worker.stop()

    @hookimpl
    def gigq_worker_tick(self, worker_id, now, queue):
        self.ticks.append({"worker_id": worker_id, "now": now, "queue": queue})
        if self.hook == "gigq_worker_tick":
            self.worker.stop()


def run_worker(pm, store, clock, stop_on: str) -> tuple[Worker, StopWhen]:
    """Run an inline worker until the hook `stop_on` stops it (bounded)."""
    worker = Worker(
        f"memory://{store}",
        worker_id="wx",
        executor="inline",
        polling_interval=0.05,
        plugin_manager=pm,
        clock=clock,
    )
    stopper = StopWhen(worker, stop_on)
    pm.register(stopper, name="stopper")
    thread = threading.Thread(target=worker.start, daemon=True)
    thread.start()
    thread.join(timeout=20)
    if thread.is_alive():
        worker.stop()
        thread.join(timeout=20)
        raise AssertionError(f"the worker did not stop on {stop_on}")
    return worker, stopper


@pytest.mark.timeout(30)
def test_hook_gigq_worker_started(pm, store, clock, rec):
    run_worker(pm, store, clock, "gigq_worker_started")

    assert rec.calls[0] == ("gigq_worker_started", "wx")


@pytest.mark.timeout(30)
def test_hook_gigq_worker_stopped(pm, store, clock, rec):
    run_worker(pm, store, clock, "gigq_worker_started")

    assert rec.calls == [("gigq_worker_started", "wx"), ("gigq_worker_stopped", "wx")]


@pytest.mark.timeout(30)
def test_hook_gigq_worker_tick(pm, store, clock, rec):
    worker, stopper = run_worker(pm, store, clock, "gigq_worker_tick")

    (tick,) = stopper.ticks
    assert tick["worker_id"] == "wx"
    assert isinstance(tick["now"], datetime) and tick["now"] == clock.now()
    assert tick["queue"] is worker.queue
    # A tick may submit jobs through the queue it is given.
    assert tick["queue"].submit(Job("from-tick", jobs.noop))


# -- extension points ----------------------------------------------------------------------


def test_hook_gigq_register_commands(pm, store):
    import click

    class Commands:
        @hookimpl
        def gigq_register_commands(self, cli):
            @cli.command("hello")
            @click.argument("who")
            @click.pass_obj
            def hello(obj, who):
                """Greet, and count the jobs."""
                with obj.open_queue(create=True) as queue:
                    click.echo(f"hello {who}: {queue.stats()['total']} jobs (json={obj.json})")

    pm.register(Commands(), name="commands")
    cli = create_cli(pm)
    result = CliRunner().invoke(cli, ["--db", f"memory://{store}", "hello", "you"])

    assert result.exit_code == 0, result.output
    assert result.stdout == "hello you: 0 jobs (json=False)\n"
    assert "hello" in CliRunner().invoke(cli, ["--help"]).stdout


def test_hook_gigq_retry_strategies(pm, store, clock, rec):
    class Always42:
        def __init__(self, extra=0):
            self.extra = extra

        def delay(self, attempt, error):
            return 42 + self.extra

    class Strategies:
        @hookimpl
        def gigq_retry_strategies(self):
            return {"always42": Always42}

    pm.register(Strategies(), name="strategies")
    assert "always42" in Hooks(pm).retry_strategies()
    with JobQueue(f"memory://{store}", plugin_manager=pm, clock=clock) as queue:
        queue.submit(Job("f", jobs.fail, retry=("always42", {"extra": 1})))
        Worker(queue, worker_id="w1").process_one()

    assert [c["delay"] for c in calls_of(rec, "gigq_job_retrying")] == [43]


def test_hook_gigq_storage(pm, clock):
    seen = []
    mine = MemoryStorage(f"mine_{uuid.uuid4().hex}")

    class Storage:
        @hookimpl
        def gigq_storage(self, url, options):
            seen.append((url, options))
            return mine if url.startswith("mine://") else None

    pm.register(Storage(), name="mine")
    with JobQueue("mine://x?durability=normal", plugin_manager=pm, clock=clock, lease=40) as q:
        assert q.storage is mine
    # Not ours: None, and the built-in adapter answers.
    with JobQueue(f"memory://{uuid.uuid4().hex}", plugin_manager=pm, clock=clock) as q:
        assert isinstance(q.storage, MemoryStorage) and q.storage is not mine

    url, options = seen[0]
    assert url == "mine://x"
    assert options["durability"] == "normal"
    assert options["lease"] == 40
    assert seen[1][0].startswith("memory://")


def test_hook_gigq_serializers(pm, store, clock):
    class Reversed:
        """JSON, written backwards."""

        def dumps(self, obj):
            return json.dumps(obj)[::-1]

        def loads(self, data):
            return json.loads(data[::-1])

    class Serializers:
        @hookimpl
        def gigq_serializers(self):
            return {"reversed": Reversed()}

    pm.register(Serializers(), name="serializers")
    assert "reversed" in Hooks(pm).serializers()
    url = f"memory://{store}?serializer=reversed"
    with JobQueue(url, plugin_manager=pm, clock=clock) as queue:
        job_id = queue.submit(Job("add", jobs.add, params={"a": 1, "b": 2}))
        assert queue.get_job(job_id).params == '{"a": 1, "b": 2}'[::-1]
        Worker(queue, worker_id="w1").process_one()
        assert queue.get_result(job_id) == 3


def test_hook_gigq_settings(pm, store, clock, monkeypatch):
    def check_region(name, value):
        if value not in ("eu", "us"):
            raise ConfigError(f"setting '{name}' must be 'eu' or 'us', got {value!r}")

    seen = []

    class Declares:
        @hookimpl
        def gigq_settings(self):
            return {
                "region": Option(default="eu", help="where", check=check_region),
                "shards": Option(default=2),
                "lease": Option(default=1.0),  # GigQ's own: ignored
            }

        @hookimpl
        def gigq_storage(self, url, options):
            seen.append(options)
            return MemoryStorage(store) if url.startswith("declares://") else None

    pm.register(Declares(), name="declares")
    assert Hooks(pm).settings()["region"].default == "eu"

    with JobQueue("declares://x", plugin_manager=pm, clock=clock) as queue:
        assert queue.settings.options["region"] == "eu"
        assert queue.settings.lease == 30.0
    assert (seen[-1]["region"], seen[-1]["shards"]) == ("eu", 2)

    monkeypatch.setenv("GIGQ_SHARDS", "8")
    with JobQueue("declares://x?region=us", plugin_manager=pm, clock=clock) as queue:
        assert queue.settings.options["region"] == "us"
        assert queue.settings.options["shards"] == 8  # text read as the default's type
    with pytest.raises(ConfigError, match="setting 'region' must be 'eu' or 'us', got 'mars'"):
        JobQueue(f"memory://{store}", plugin_manager=pm, clock=clock, region="mars")
    monkeypatch.setenv("GIGQ_SHARDS", "many")
    with pytest.raises(ConfigError, match="setting 'shards' from GIGQ_SHARDS must be a int"):
        JobQueue(f"memory://{store}", plugin_manager=pm, clock=clock)


# -- isolation: a raising plugin never fails or loses a job --------------------------------


class RaisesEverywhere:
    """Every lifecycle hook raises."""

    @hookimpl
    def gigq_job_submitted(self, job):
        raise RuntimeError("boom in submitted")

    @hookimpl
    def gigq_job_started(self, job):
        raise RuntimeError("boom in started")

    @hookimpl
    def gigq_job_succeeded(self, job):
        raise RuntimeError("boom in succeeded")

    @hookimpl
    def gigq_job_failed(self, job):
        raise RuntimeError("boom in failed")

    @hookimpl
    def gigq_job_retrying(self, job):
        raise RuntimeError("boom in retrying")

    @hookimpl
    def gigq_job_cancelled(self, job):
        raise RuntimeError("boom in cancelled")

    @hookimpl
    def gigq_job_timed_out(self, job):
        raise RuntimeError("boom in timed_out")

    @hookimpl
    def gigq_worker_started(self):
        raise RuntimeError("boom in worker_started")

    @hookimpl
    def gigq_worker_stopped(self):
        raise RuntimeError("boom in worker_stopped")

    @hookimpl
    def gigq_worker_tick(self):
        raise RuntimeError("boom in worker_tick")


def test_a_raising_hook_does_not_fail_the_job(pm, queue, worker, rec, caplog):
    pm.register(RaisesEverywhere(), name="raises")

    with caplog.at_level(logging.ERROR, logger="gigq"):
        ok = queue.submit(Job("ok", jobs.add, params={"a": 1, "b": 1}))
        worker.process_one()
        retried = queue.submit(Job("r", jobs.fail_until, params={"attempts": 1}, retry_delay=0))
        worker.process_one()
        worker.process_one()
        cancelled = queue.submit(Job("c", jobs.noop))
        queue.cancel(cancelled)

    assert queue.get_result(ok) == 2
    assert queue.get_status(retried)["status"] == "completed"
    assert queue.get_status(retried)["attempts"] == 2
    assert queue.get_status(cancelled)["status"] == "cancelled"
    for hook in ("submitted", "started", "succeeded", "failed", "retrying", "cancelled"):
        assert f"plugin 'raises' raised in gigq_job_{hook}" in caplog.text
    # The other plugins saw every call.
    assert rec.names().count("gigq_job_succeeded") == 2


@pytest.mark.timeout(30)
def test_a_raising_worker_hook_does_not_stop_the_worker(pm, store, clock, caplog):
    pm.register(RaisesEverywhere(), name="raises")

    with caplog.at_level(logging.ERROR, logger="gigq"):
        _, stopper = run_worker(pm, store, clock, "gigq_worker_tick")

    assert len(stopper.ticks) == 1
    assert "plugin 'raises' raised in gigq_worker_started" in caplog.text
    assert "plugin 'raises' raised in gigq_worker_tick" in caplog.text
    assert "plugin 'raises' raised in gigq_worker_stopped" in caplog.text


# -- plugins that fail to load, GIGQ_DISABLE_PLUGINS ----------------------------------------


class _Good:
    @hookimpl
    def gigq_retry_strategies(self):
        return {"good_strategy": lambda: None}


class _Misnamed:
    @hookimpl
    def gigq_job_submitted(self, jobb):  # not an argument of the spec: pluggy refuses it
        pass


#: Objects the fake entry points below load.
GOOD = _Good()
MISNAMED = _Misnamed()


@pytest.fixture
def fake_entry_points(monkeypatch):
    """Entry points of group gigq: the real built-ins plus third-party fakes."""
    real = importlib.metadata.entry_points

    def make(*extra):
        builtins = [e for e in real(group="gigq") if e.dist is not None and e.dist.name == "gigq"]
        entries = builtins + [
            importlib.metadata.EntryPoint(name, value, "gigq") for name, value in extra
        ]

        def entry_points(**params):
            if params.get("group") == "gigq":
                return importlib.metadata.EntryPoints(entries)
            return real(**params)

        monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)

    return make


def test_a_plugin_that_fails_to_load_is_reported_and_gigq_keeps_working(
    fake_entry_points, store, clock, caplog
):
    fake_entry_points(
        ("broken", "gigq_no_such_plugin_module"),
        ("misnamed", "tests.unit.test_plugins:MISNAMED"),
        ("good", "tests.unit.test_plugins:GOOD"),
    )

    with caplog.at_level(logging.WARNING, logger="gigq.plugins"):
        pm = make_plugin_manager()

    assert set(pm.failures) == {"broken", "misnamed"}
    assert "plugin 'broken'" in pm.failures["broken"]
    assert "gigq_no_such_plugin_module" in pm.failures["broken"]
    assert "jobb" in pm.failures["misnamed"]
    assert "plugin 'broken'" in caplog.text
    assert pm.has_plugin("good") and pm.has_plugin("sqlite")
    with JobQueue(f"memory://{store}", plugin_manager=pm, clock=clock) as queue:
        job_id = queue.submit(Job("add", jobs.add, params={"a": 1, "b": 1}))
        Worker(queue, worker_id="w1").process_one()
        assert queue.get_result(job_id) == 2
    listed = CliRunner().invoke(create_cli(pm), ["--json", "plugins"])
    assert listed.exit_code == 0, listed.output
    assert set(json.loads(listed.stdout)["failed"]) == {"broken", "misnamed"}


@pytest.mark.parametrize(
    ("disabled", "loaded"),
    [
        (None, {"good", "other"}),
        ("*", set()),
        ("good", {"other"}),
        (" good , other ", set()),
        ("sqlite,memory,retry,json", {"good", "other"}),  # the built-ins always load
    ],
)
def test_gigq_disable_plugins(fake_entry_points, monkeypatch, disabled, loaded):
    fake_entry_points(
        ("good", "tests.unit.test_plugins:GOOD"), ("other", "tests.unit.test_plugins:_Good")
    )
    if disabled is not None:
        monkeypatch.setenv("GIGQ_DISABLE_PLUGINS", disabled)

    pm = make_plugin_manager()

    assert {name for name in ("good", "other") if pm.has_plugin(name)} == loaded
    for builtin in ("sqlite", "memory", "retry", "json"):
        assert pm.has_plugin(builtin)
    assert pm.failures == {}


def test_without_entry_points_no_third_party_plugin_loads(fake_entry_points):
    fake_entry_points(("good", "tests.unit.test_plugins:GOOD"))

    pm = make_plugin_manager(load_entrypoints=False)

    assert not pm.has_plugin("good")
    assert pm.has_plugin("sqlite")


@pytest.mark.parametrize(
    "raised", [KeyboardInterrupt(), SystemExit(3), GeneratorExit(), RuntimeError("boom")]
)
def test_a_plugin_raising_anything_at_import_is_reported_and_skipped(
    fake_entry_points, tmp_path, monkeypatch, caplog, raised
):
    module = f"gigq_test_raising_{uuid.uuid4().hex}"
    (tmp_path / f"{module}.py").write_text(f"raise {raised!r}\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    fake_entry_points(("raising", module), ("good", "tests.unit.test_plugins:GOOD"))

    with caplog.at_level(logging.WARNING, logger="gigq.plugins"):
        pm = make_plugin_manager()

    assert "plugin 'raising'" in pm.failures["raising"]
    assert type(raised).__name__ in pm.failures["raising"]
    assert pm.has_plugin("good") and pm.has_plugin("sqlite")
    assert [r.getMessage() for r in caplog.records] == [pm.failures["raising"]]
    assert CliRunner().invoke(create_cli(pm), ["--help"]).exit_code == 0


class _AddsThenRaises:
    def __init__(self, raised: BaseException) -> None:
        self.raised = raised

    @hookimpl
    def gigq_register_commands(self, cli):

        @cli.command("half")
        def half():
            """Added before the plugin raised: left out with the rest of the plugin."""

        raise self.raised


class _Hello:
    @hookimpl
    def gigq_register_commands(self, cli):
        import click

        @cli.command("hello")
        def hello():
            """Greet."""
            click.echo("hello")


@pytest.mark.parametrize("raised", [RuntimeError("boom"), SystemExit(2), KeyboardInterrupt()])
def test_a_plugin_whose_register_commands_raises_leaves_the_other_commands_working(
    pm, store, caplog, raised
):
    pm.register(_Hello(), name="hello")
    pm.register(_AddsThenRaises(raised), name="broken")
    pm.register(_Hello(), name="hello-again")  # called first (pluggy: last registered)

    with caplog.at_level(logging.WARNING, logger="gigq.plugins"):
        cli = create_cli(pm)

    message = f"plugin 'broken' failed to add its commands: {raised!r}"
    assert [r.getMessage() for r in caplog.records] == [message]
    assert pm.failures == {"broken": message}
    runner = CliRunner()
    assert runner.invoke(cli, ["hello"]).stdout == "hello\n"
    assert "half" not in cli.commands
    stats = runner.invoke(cli, ["--db", f"memory://{store}", "--json", "stats"])
    assert stats.exit_code == 0, stats.output
    listed = runner.invoke(cli, ["--json", "plugins"])
    assert json.loads(listed.stdout)["failed"] == {"broken": message}


class _RaisesEverywhere:
    @hookimpl
    def gigq_storage(self, url, options):
        raise RuntimeError("no storage today")

    @hookimpl
    def gigq_serializers(self):
        raise RuntimeError("no serializers today")

    @hookimpl
    def gigq_retry_strategies(self):
        raise RuntimeError("no strategies today")


def test_a_plugin_raising_in_an_extension_hook_is_logged_and_skipped(pm, store, clock, caplog):
    pm.register(_RaisesEverywhere(), name="broken")

    with caplog.at_level(logging.WARNING, logger="gigq.plugins"):
        with JobQueue(f"memory://{store}", plugin_manager=pm, clock=clock) as queue:
            job_id = queue.submit(Job("add", jobs.add, params={"a": 1, "b": 2}))
            Worker(queue, worker_id="w1").process_one()
            assert queue.get_result(job_id) == 3
        listed = CliRunner().invoke(create_cli(pm), ["--db", f"memory://{store}", "list"])

    assert listed.exit_code == 0, listed.output
    messages = {r.getMessage() for r in caplog.records}
    for hook, text in (
        ("gigq_storage", "no storage today"),
        ("gigq_serializers", "no serializers today"),
        ("gigq_retry_strategies", "no strategies today"),
    ):
        assert f"plugin 'broken' failed in {hook}: RuntimeError('{text}')" in messages


def test_when_only_a_broken_plugin_could_open_a_url_that_is_one_sentence(pm):
    pm.register(_RaisesEverywhere(), name="broken")

    result = CliRunner().invoke(create_cli(pm), ["--db", "nosuch://x", "list"])

    assert result.exit_code == 78
    assert result.stderr.splitlines()[-1] == (
        "Error: plugin 'broken' failed in gigq_storage: RuntimeError('no storage today')"
    )


def test_a_gigq_error_from_a_storage_plugin_is_its_answer_to_the_user(pm):
    from gigq_core.errors import StorageUnavailableError

    class Unreachable:
        @hookimpl
        def gigq_storage(self, url, options):
            raise StorageUnavailableError("the server at nosuch://x is unreachable")

    pm.register(Unreachable(), name="unreachable")

    result = CliRunner().invoke(create_cli(pm), ["--db", "nosuch://x", "list"])

    assert result.exit_code == 69
    assert result.stderr == "Error: the server at nosuch://x is unreachable\n"


# -- first-party plugins -------------------------------------------------------------------


def first_party_plugins() -> list[tuple[str, str, Path]]:
    """(entry point name, module, src folder) of every plugin in plugins/ and
    examples/plugins/, read from their pyproject.toml."""
    found = []
    for pyproject in sorted(
        [*ROOT.glob("plugins/*/pyproject.toml"), *ROOT.glob("examples/plugins/*/pyproject.toml")]
    ):
        with pyproject.open("rb") as handle:
            project = tomllib.load(handle)["project"]
        assert project["name"] == pyproject.parent.name, pyproject
        for name, value in project["entry-points"]["gigq"].items():
            found.append((name, value, pyproject.parent / "src"))
    return found


def test_every_first_party_plugin_registers_and_implements_only_known_hooks(monkeypatch):
    plugins = first_party_plugins()
    assert {name for name, _, _ in plugins} >= {"notify", "cron", "example"}
    pm = make_plugin_manager(load_entrypoints=False)

    for name, module_name, src in plugins:
        monkeypatch.syspath_prepend(str(src))
        module = sys.modules.get(module_name) or importlib.import_module(module_name)
        assert ":" not in module_name, "the entry point names a module, as the guide says"
        pm.register(module, name=name)
        assert pm.get_hookcallers(module), f"plugin {name} implements no hook"

    pm.check_pending()
