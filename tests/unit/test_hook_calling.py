"""Hooks are called the pluggy way (issue 17): wrappers see every call, each implementation is
guarded so one that raises stops nothing, tracing is pluggy's hook call monitoring, the
built-in commands come through `gigq_register_commands`, and the first-party plugins import
GigQ only through `gigq.plugin`."""

from __future__ import annotations

import ast
import logging
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

import gigq.plugin
from gigq_cli import create_cli
from gigq_core import GigQPluginManager, Job, JobQueue, Worker, hookimpl
from gigq_core import hookspecs as specs_module
from gigq_core.plugins import (
    COMMANDS_HOOK,
    EXTENSION_HOOKS,
    LIFECYCLE_HOOKS,
    make_plugin_manager,
    plugin_versions,
)
from gigq_core.testing import RecordingPlugin
from tests import jobs

ROOT = Path(__file__).resolve().parents[2]
#: The name the CLI registers its built-in commands under (pluggy's name for the module).
BUILTIN_COMMANDS = "gigq_cli.commands"


class Answers:
    """Answers gigq_job_succeeded with a value, for a wrapper to see."""

    @hookimpl
    def gigq_job_succeeded(self, job):
        return f"seen {job.name}"


class RaisesInSucceeded:
    @hookimpl
    def gigq_job_succeeded(self, job):
        raise RuntimeError("succeeded hook broke")


class Wrapper:
    """A new-style wrapper: sees the call's arguments and the other implementations' answers."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, object, object]] = []

    @hookimpl(wrapper=True)
    def gigq_job_succeeded(self, job, result):
        answers = yield
        self.seen.append((job.name, result, answers))
        return answers


class OldStyleWrapper:
    """An old-style wrapper (`hookwrapper=True`): gets a pluggy Result."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, object, object]] = []

    @hookimpl(hookwrapper=True)
    def gigq_job_succeeded(self, job, result):
        outcome = yield
        self.seen.append((job.name, result, outcome.get_result()))


@pytest.mark.parametrize("wrapper_class", [Wrapper, OldStyleWrapper])
def test_a_wrapper_sees_every_call_and_the_other_answers(pm, queue, worker, caplog, wrapper_class):
    wrapper = wrapper_class()
    pm.register(wrapper, name="wrapper")
    pm.register(Answers(), name="answers")
    pm.register(RaisesInSucceeded(), name="raising")

    with caplog.at_level(logging.ERROR, logger="gigq"):
        first = queue.submit(Job("a", jobs.add, params={"a": 1, "b": 2}))
        worker.process_one()
        second = queue.submit(Job("b", jobs.add, params={"a": 2, "b": 2}))
        worker.process_one()

    assert queue.get_result(first) == 3 and queue.get_result(second) == 4
    # The raising implementation is left out of the answers, and logged with its name.
    assert wrapper.seen == [("a", 3, ["seen a"]), ("b", 4, ["seen b"])]
    assert caplog.text.count("plugin 'raising' raised in gigq_job_succeeded") == 2


class WrapsEveryJobHook:
    """A wrapper around each job hook a success fires, recording the calls it saw."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    @hookimpl(wrapper=True)
    def gigq_job_submitted(self, job):
        self.calls.append(("gigq_job_submitted", job.id))
        return (yield)

    @hookimpl(wrapper=True)
    def gigq_job_started(self, job):
        self.calls.append(("gigq_job_started", job.id))
        return (yield)

    @hookimpl(wrapper=True)
    def gigq_job_succeeded(self, job):
        self.calls.append(("gigq_job_succeeded", job.id))
        return (yield)


def test_a_wrapper_sees_the_calls_a_plain_implementation_sees(pm, queue, worker, rec):
    wrapper = WrapsEveryJobHook()
    pm.register(wrapper, name="wrapper")

    queue.submit(Job("a", jobs.add, params={"a": 1, "b": 2}))
    worker.process_one()

    assert len(rec.calls) == 3
    assert wrapper.calls == rec.calls


class BrokenWrappers:
    """Wrappers that fail in each way pluggy allows them to."""

    @hookimpl(wrapper=True)
    def gigq_job_submitted(self, job):
        raise RuntimeError("before the yield")
        yield  # a generator function, as pluggy requires of a wrapper

    @hookimpl(wrapper=True)
    def gigq_job_started(self, job):
        yield
        raise RuntimeError("after the yield")

    @hookimpl(hookwrapper=True)
    def gigq_job_succeeded(self, job):
        yield
        raise RuntimeError("old-style, after the yield")

    @hookimpl(wrapper=True)
    def gigq_job_failed(self, job):
        return
        yield  # never reached: the wrapper does not yield


def test_a_raising_wrapper_is_logged_and_stops_nothing(pm, queue, worker, rec, caplog):
    pm.register(BrokenWrappers(), name="broken")

    with caplog.at_level(logging.ERROR, logger="gigq"):
        ok = queue.submit(Job("ok", jobs.add, params={"a": 1, "b": 1}))
        worker.process_one()
        bad = queue.submit(Job("bad", jobs.fail, max_attempts=1))
        worker.process_one()

    assert queue.get_result(ok) == 2
    assert queue.get_status(bad)["status"] == "failed"
    assert rec.names() == [
        "gigq_job_submitted",
        "gigq_job_started",
        "gigq_job_succeeded",
        "gigq_job_submitted",
        "gigq_job_started",
        "gigq_job_failed",
    ]
    for hook, text in (
        ("gigq_job_submitted", "before the yield"),
        ("gigq_job_started", "after the yield"),
        ("gigq_job_succeeded", "old-style, after the yield"),
        ("gigq_job_failed", "did not yield"),
    ):
        assert f"plugin 'broken' raised in {hook}" in caplog.text
        assert text in caplog.text


class RaisesEverywhere:
    """Every lifecycle hook a worker fires raises."""

    @hookimpl
    def gigq_job_started(self, job):
        raise RuntimeError("boom in started")

    @hookimpl
    def gigq_job_succeeded(self, job):
        raise RuntimeError("boom in succeeded")

    @hookimpl
    def gigq_worker_started(self, worker_id):
        raise RuntimeError("boom in worker_started")

    @hookimpl
    def gigq_worker_tick(self, worker_id):
        raise RuntimeError("boom in worker_tick")

    @hookimpl
    def gigq_worker_stopped(self, worker_id):
        raise RuntimeError("boom in worker_stopped")


class StopAfterSuccess:
    def __init__(self) -> None:
        self.worker: Worker | None = None

    @hookimpl(trylast=True)  # after the others: they all saw the success
    def gigq_job_succeeded(self, job):
        assert self.worker is not None
        self.worker.stop()


@pytest.mark.timeout(60)
def test_a_raising_plugin_stops_neither_the_others_nor_a_real_worker_on_sqlite(
    pm, tmp_path, caplog
):
    db = str(tmp_path / "jobs.db")
    pm.register(RaisesEverywhere(), name="raises")
    rec = RecordingPlugin()
    pm.register(rec, name="rec")
    stopper = StopAfterSuccess()
    pm.register(stopper, name="stopper")
    with JobQueue(db, plugin_manager=pm) as queue:
        job_id = queue.submit(Job("add", jobs.add, params={"a": 2, "b": 3}))
    worker = Worker(
        db, worker_id="wsql", executor="inline", polling_interval=0.05, plugin_manager=pm
    )
    stopper.worker = worker

    with caplog.at_level(logging.ERROR, logger="gigq"):
        thread = threading.Thread(target=worker.start, daemon=True)
        thread.start()
        thread.join(timeout=40)
    if thread.is_alive():
        worker.stop()
        thread.join(timeout=10)
        raise AssertionError("the worker did not stop")

    with JobQueue(db, plugin_manager=pm) as queue:
        assert queue.get_result(job_id) == 5
    assert rec.calls == [
        ("gigq_job_submitted", job_id),
        ("gigq_worker_started", "wsql"),
        ("gigq_job_started", job_id),
        ("gigq_job_succeeded", job_id),
        ("gigq_worker_stopped", "wsql"),
    ]
    for hook in ("job_started", "job_succeeded", "worker_started", "worker_stopped"):
        assert f"plugin 'raises' raised in gigq_{hook}" in caplog.text


def test_an_unregistered_plugin_is_no_longer_called(pm, queue, caplog):
    plugin = RaisesInSucceeded()
    pm.register(plugin, name="raising")
    pm.unregister(plugin)

    assert not pm.hook.gigq_job_succeeded.get_hookimpls()
    pm.hook.gigq_job_succeeded(job=None, result=None, duration=0.0)
    assert "raising" not in caplog.text


# -- tracing -------------------------------------------------------------------------------


def test_trace_plugins_is_pluggys_hook_call_monitoring(monkeypatch, store, clock, caplog):
    monkeypatch.setenv("GIGQ_TRACE_PLUGINS", "1")
    pm = make_plugin_manager(load_entrypoints=False)
    pm.register(RecordingPlugin(), name="rec")
    pm.register(Wrapper(), name="wrapper")

    with (
        caplog.at_level(logging.INFO, logger="gigq.plugins"),
        JobQueue(f"memory://{store}", plugin_manager=pm, clock=clock) as queue,
    ):
        job_id = queue.submit(Job("n", jobs.noop))
        Worker(queue, worker_id="w1").process_one()

    assert pm.is_traced
    messages = [r.getMessage() for r in caplog.records]
    assert f"hook gigq_job_submitted(job=<job {job_id} 'n'>) -> ['rec']" in messages
    succeeded = next(m for m in messages if m.startswith("hook gigq_job_succeeded("))
    assert succeeded.endswith("-> ['rec', 'wrapper']")


def test_every_lifecycle_call_goes_through_pluggys_hook_calling(pm, queue, worker, rec):
    monitored: list[str] = []
    pm.add_hookcall_monitoring(
        lambda name, impls, kwargs: monitored.append(name), lambda *args: None
    )

    queue.submit(Job("a", jobs.add, params={"a": 1, "b": 2}))
    worker.process_one()
    queue.cancel(queue.submit(Job("c", jobs.noop)))

    lifecycle = [name for name in monitored if name in LIFECYCLE_HOOKS]
    assert lifecycle == rec.names()


# -- the manager ---------------------------------------------------------------------------


def test_every_hook_spec_has_one_kind_of_guard():
    specs = {
        name
        for name, value in vars(specs_module).items()
        if name.startswith("gigq_") and hasattr(value, f"{specs_module.NAME}_spec")
    }

    assert LIFECYCLE_HOOKS | EXTENSION_HOOKS | {COMMANDS_HOOK} == specs
    assert not LIFECYCLE_HOOKS & EXTENSION_HOOKS
    assert COMMANDS_HOOK not in LIFECYCLE_HOOKS | EXTENSION_HOOKS


def test_the_manager_is_typed_and_carries_gigqs_state():
    pm = make_plugin_manager(load_entrypoints=False)

    assert isinstance(pm, GigQPluginManager)
    assert pm.failures == {} and isinstance(pm.versions, dict) and pm.is_traced is False


# -- the built-in commands are a plugin -----------------------------------------------------


class Hello:
    @hookimpl
    def gigq_register_commands(self, cli):
        import click

        @cli.command("hello")
        def hello():
            """Greet."""
            click.echo("hello")


def test_the_built_in_commands_come_through_the_hook(pm):
    cli = create_cli(pm)

    assert pm.has_plugin(BUILTIN_COMMANDS)
    assert {"submit", "worker", "list", "stats", "plugins"} <= set(cli.commands)
    listed = {name: hooks for name, _, hooks in plugin_versions(pm)}
    assert listed[BUILTIN_COMMANDS] == ["gigq_register_commands"]
    # Building the group again registers nothing twice.
    assert set(create_cli(pm).commands) == set(cli.commands)


def test_without_the_built_in_plugin_the_group_has_only_plugin_commands(pm):
    pm.set_blocked(BUILTIN_COMMANDS)
    pm.register(Hello(), name="hello")

    cli = create_cli(pm)

    assert set(cli.commands) == {"hello"}
    assert CliRunner().invoke(cli, ["hello"]).stdout == "hello\n"


def test_a_plugin_command_of_a_built_in_name_replaces_it(pm):
    class OwnStats:
        @hookimpl
        def gigq_register_commands(self, cli):
            import click

            @cli.command("stats")
            def stats():
                """The plugin's own stats."""
                click.echo("plugin stats")

    pm.register(OwnStats(), name="own-stats")

    result = CliRunner().invoke(create_cli(pm), ["stats"])

    assert result.stdout == "plugin stats\n"


# -- one public module for plugin authors ---------------------------------------------------

#: What first-party plugins may import of GigQ: the public module, and the facade.
ALLOWED = {"gigq", "gigq.plugin"}
#: What their tests may import besides: the CLI's public `create_cli`.
ALLOWED_IN_TESTS = ALLOWED | {"gigq_cli"}
#: First-party plugins held to that rule (gigq-postgres is a storage adapter, not held here).
PLUGIN_FOLDERS = ("plugins/gigq-notify", "plugins/gigq-cron", "examples/plugins/gigq-example")


def gigq_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every absolute import of a GigQ package in `path`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [(node.lineno, name) for name in names if name.split(".")[0].startswith("gigq")]
    return found


@pytest.mark.parametrize("folder", PLUGIN_FOLDERS)
def test_first_party_plugins_import_gigq_only_through_the_public_module(folder):
    base = ROOT / folder
    own = {path.parent.name for path in (base / "src").glob("*/__init__.py")}
    wrong = []
    for part, allowed in (("src", ALLOWED), ("tests", ALLOWED_IN_TESTS)):
        for path in sorted((base / part).rglob("*.py")):
            for line, module in gigq_imports(path):
                if module not in allowed and module.split(".")[0] not in own:
                    wrong.append(f"{path.relative_to(ROOT)}:{line} imports {module}")

    assert gigq_imports(base / "src" / sorted(own)[0] / "__init__.py"), "the scan sees imports"
    assert not wrong, "\n".join(wrong)


def test_the_public_module_gives_every_name_it_lists():
    missing = [name for name in gigq.plugin.__all__ if getattr(gigq.plugin, name, None) is None]

    assert not missing
    assert {"hookimpl", "JobRecord", "ErrorInfo", "JobQueue", "GigQError"} <= set(
        gigq.plugin.__all__
    )
    assert gigq.plugin.hookimpl is hookimpl
