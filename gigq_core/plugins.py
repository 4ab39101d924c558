"""The plugin manager: built-in plugins, entry points of group `gigq`, and guarded hook calls."""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pluggy
from pluggy import HookImpl, Result

from gigq_core import hookspecs
from gigq_core._guards import (
    CommandsGuard,
    ExtensionGuard,
    Guard,
    LifecycleGuard,
    collect_failures,
    guarded_impl,
)
from gigq_core.errors import ConfigError, PluginError
from gigq_core.records import JobRecord

if TYPE_CHECKING:
    from datetime import datetime

    from gigq_core.hookspecs import CommandGroup
    from gigq_core.ports import Serializer, Storage
    from gigq_core.queue import JobQueue
    from gigq_core.records import ErrorInfo
    from gigq_core.settings import Option

log = logging.getLogger("gigq.plugins")

#: The distribution whose plugins always load.
DISTRIBUTION = "gigq"
#: The core's own default plugins: name -> module.
DEFAULT_PLUGINS = {
    "memory": "gigq_core.memory",
    "retry": "gigq_core.retry",
    "json": "gigq_core.serializers",
}
#: The hooks that observe jobs and workers: an implementation that raises is logged with its
#: traceback and the call goes on.
LIFECYCLE_HOOKS = frozenset(
    {
        "gigq_job_submitted",
        "gigq_job_started",
        "gigq_job_succeeded",
        "gigq_job_failed",
        "gigq_job_retrying",
        "gigq_job_cancelled",
        "gigq_job_timed_out",
        "gigq_worker_started",
        "gigq_worker_stopped",
        "gigq_worker_tick",
    }
)
#: The hooks that answer a question: an implementation that raises (but for a GigQError, its
#: answer to the user) is logged on one line and skipped.
EXTENSION_HOOKS = frozenset(
    {"gigq_storage", "gigq_retry_strategies", "gigq_serializers", "gigq_settings"}
)
#: The hook that adds commands: an implementation that raises anything is logged on one line,
#: recorded in `GigQPluginManager.failures`, and its commands are taken out again.
COMMANDS_HOOK = "gigq_register_commands"


class GigQPluginManager(pluggy.PluginManager):
    """pluggy's plugin manager with GigQ's hook specs and state.

    Hooks are called the pluggy way (`pm.hook.gigq_job_succeeded(...)`), wrappers included,
    but each implementation of a GigQ hook runs inside a guard: one that raises is reported
    with its plugin's name and never stops the other implementations, fails a job or stops
    a worker.
    """

    def __init__(self) -> None:
        super().__init__(hookspecs.NAME)
        self.add_hookspecs(hookspecs)
        #: Plugin name -> why it was left out (it failed to load, or to add its commands).
        self.failures: dict[str, str] = {}
        #: Plugin name -> its distribution's version, for plugins loaded from entry points.
        self.versions: dict[str, str] = {}
        #: Whether hook calls are logged (GIGQ_TRACE_PLUGINS).
        self.is_traced = False
        #: Each registered implementation of a GigQ hook -> the same one inside its guard.
        self._guarded: dict[HookImpl, HookImpl] = {}

    def register(self, plugin: object, name: str | None = None) -> str | None:
        """Register `plugin` as pluggy does, and put its GigQ hook implementations in guards."""
        registered = super().register(plugin, name)
        for caller in self.get_hookcallers(plugin) or ():
            for impl in caller.get_hookimpls():
                guard = self._guard(caller.name, impl) if impl.plugin is plugin else None
                if guard is not None:
                    self._guarded[impl] = guarded_impl(impl, guard)
        return registered

    def unregister(self, plugin: object | None = None, name: str | None = None) -> Any | None:
        """Unregister a plugin as pluggy does, with its guards."""
        removed = super().unregister(plugin, name)
        if removed is not None:
            self._guarded = {k: v for k, v in self._guarded.items() if k.plugin is not removed}
        return removed

    def _hookexec(
        self,
        hook_name: str,
        methods: Sequence[HookImpl],
        kwargs: Mapping[str, object],
        firstresult: bool,
    ) -> object | list[object]:
        # Every hook call passes here (pluggy's one entry for all its hook callers): the
        # guarded implementations stand in for the plugins' own, and pluggy's calling runs
        # unchanged (order, wrappers, firstresult, hook call monitoring).
        guarded = [self._guarded.get(impl, impl) for impl in methods]
        return super()._hookexec(hook_name, guarded, kwargs, firstresult)

    def _guard(self, hook: str, impl: HookImpl) -> Guard | None:
        if hook in LIFECYCLE_HOOKS:
            return LifecycleGuard(hook, impl)
        if hook in EXTENSION_HOOKS:
            return ExtensionGuard(hook, impl)
        if hook == COMMANDS_HOOK:
            return CommandsGuard(hook, impl, self.failures)
        return None  # not a GigQ hook: a plugin's own spec keeps pluggy's rules

    def trace_calls(self) -> None:
        """Log every hook call on the `gigq.plugins` logger at INFO, with its arguments and
        the plugins that implement it (pluggy's hook call monitoring)."""

        def before(name: str, impls: Sequence[HookImpl], kwargs: Mapping[str, Any]) -> None:
            arguments = ", ".join(f"{k}={_short(v)}" for k, v in kwargs.items())
            log.info("hook %s(%s) -> %s", name, arguments, [i.plugin_name for i in impls])

        def after(
            outcome: Result[Any], name: str, impls: Sequence[HookImpl], kwargs: Mapping[str, Any]
        ) -> None:
            return None

        if not log.handlers and not logging.getLogger().handlers:
            # Tracing was asked for: make it visible even where nothing configured logging.
            handler = logging.StreamHandler()
            handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
            log.addHandler(handler)
            log.setLevel(logging.INFO)
        self.add_hookcall_monitoring(before, after)
        self.is_traced = True


def make_plugin_manager(load_entrypoints: bool = True) -> GigQPluginManager:
    """A fresh plugin manager with the specs, the built-in plugins and (optionally) the
    third-party plugins of entry point group `gigq`.

    The built-ins of the `gigq` distribution always load. A plugin that fails to load is
    logged, recorded in `pm.failures` (name -> message) and skipped.
    """
    pm = GigQPluginManager()
    for name, module in DEFAULT_PLUGINS.items():
        pm.register(importlib.import_module(module), name=name)
    block_all, blocked = _disabled(os.environ)
    for entry in importlib.metadata.entry_points(group=hookspecs.NAME):
        dist = entry.dist.name if entry.dist is not None else None
        builtin = dist == DISTRIBUTION
        if not builtin and (not load_entrypoints or block_all or entry.name in blocked):
            continue
        if pm.has_plugin(entry.name) or pm.is_blocked(entry.name):
            continue
        try:
            pm.register(entry.load(), name=entry.name)
        # A plugin is imported by every gigq command: whatever its import raises, even
        # KeyboardInterrupt or SystemExit, must not stop them; it is reported and skipped.
        except BaseException as err:
            version = entry.dist.version if entry.dist is not None else "?"
            message = f"plugin '{entry.name}' ({dist} {version}) failed to load: {err!r}"
            pm.failures[entry.name] = message
            log.warning("%s", message)
        else:
            if entry.dist is not None:
                pm.versions[entry.name] = entry.dist.version
    if os.environ.get("GIGQ_TRACE_PLUGINS", "") not in ("", "0"):
        pm.trace_calls()
    return pm


def _disabled(environ: dict[str, str] | os._Environ[str]) -> tuple[bool, set[str]]:
    raw = environ.get("GIGQ_DISABLE_PLUGINS", "")
    names = {part.strip() for part in raw.split(",") if part.strip()}
    return "*" in names, names - {"*"}


_default: GigQPluginManager | None = None
_default_lock = threading.Lock()


def get_plugin_manager() -> GigQPluginManager:
    """The process's default plugin manager, created on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = make_plugin_manager()
        return _default


def plugin_versions(pm: GigQPluginManager) -> list[tuple[str, str, list[str]]]:
    """(name, version, hooks implemented) for every registered plugin."""
    dists = {id(plugin): dist for plugin, dist in pm.list_plugin_distinfo()}
    rows = []
    for name, plugin in pm.list_name_plugin():
        if plugin is None:
            continue
        dist = dists.get(id(plugin))
        version = pm.versions.get(name) or (dist.version if dist is not None else _own_version())
        hooks = sorted(impl.name for impl in pm.get_hookcallers(plugin) or ())
        rows.append((name, version, hooks))
    return rows


def _own_version() -> str:
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


class Hooks:
    """Typed calls of the hooks, one method per hook, through pluggy's hook calling.

    The manager guards every implementation (see `GigQPluginManager`): a lifecycle
    implementation that raises is logged with its plugin's name and never stops the other
    implementations, fails a job or loses one.
    """

    def __init__(self, pm: GigQPluginManager) -> None:
        self.pm = pm
        #: Hook name -> the last failure of a plugin in it, in this object's calls.
        self.failed: dict[str, str] = {}

    def register_commands(self, cli: CommandGroup) -> None:
        """Call gigq_register_commands; a plugin that raises is logged on one line, recorded
        in `pm.failures`, and its commands are left out, so every other command works."""
        self.pm.hook.gigq_register_commands(cli=cli)

    def wanted(self, event: str) -> bool:
        """Whether any plugin implements `gigq_job_<event>` (to skip work only it needs)."""
        return bool(getattr(self.pm.hook, f"gigq_job_{event}").get_hookimpls())

    def job_submitted(self, job: JobRecord) -> None:
        """Fire gigq_job_submitted."""
        self.pm.hook.gigq_job_submitted(job=job)

    def job_started(self, job: JobRecord, attempt: int, worker_id: str) -> None:
        """Fire gigq_job_started."""
        self.pm.hook.gigq_job_started(job=job, attempt=attempt, worker_id=worker_id)

    def job_succeeded(self, job: JobRecord, result: Any, duration: float) -> None:
        """Fire gigq_job_succeeded."""
        self.pm.hook.gigq_job_succeeded(job=job, result=result, duration=duration)

    def job_failed(self, job: JobRecord, error: ErrorInfo, final: bool) -> None:
        """Fire gigq_job_failed."""
        self.pm.hook.gigq_job_failed(job=job, error=error, final=final)

    def job_retrying(self, job: JobRecord, error: ErrorInfo, delay: float) -> None:
        """Fire gigq_job_retrying."""
        self.pm.hook.gigq_job_retrying(job=job, error=error, delay=delay)

    def job_cancelled(self, job: JobRecord, reason: str) -> None:
        """Fire gigq_job_cancelled."""
        self.pm.hook.gigq_job_cancelled(job=job, reason=reason)

    def job_timed_out(self, job: JobRecord, final: bool) -> None:
        """Fire gigq_job_timed_out."""
        self.pm.hook.gigq_job_timed_out(job=job, final=final)

    def worker_started(self, worker_id: str) -> None:
        """Fire gigq_worker_started."""
        self.pm.hook.gigq_worker_started(worker_id=worker_id)

    def worker_stopped(self, worker_id: str) -> None:
        """Fire gigq_worker_stopped."""
        self.pm.hook.gigq_worker_stopped(worker_id=worker_id)

    def worker_tick(self, worker_id: str, now: datetime, queue: JobQueue) -> None:
        """Fire gigq_worker_tick."""
        self.pm.hook.gigq_worker_tick(worker_id=worker_id, now=now, queue=queue)

    def storage(self, url: str, options: dict[str, Any]) -> Storage | None:
        """The first adapter that answers `url`; when none does and a plugin failed in
        trying, that failure as a PluginError."""
        with collect_failures() as failures:
            answer: Storage | None = self.pm.hook.gigq_storage(url=url, options=options)
        self.failed.update(failures)
        if answer is None and "gigq_storage" in failures:
            raise PluginError(failures["gigq_storage"])
        return answer

    def retry_strategies(self) -> dict[str, Any]:
        """Every retry strategy by name, a strategy object or a factory (plugins may add
        names)."""
        with collect_failures() as failures:
            answers = self.pm.hook.gigq_retry_strategies()
        self.failed.update(failures)
        merged: dict[str, Any] = {}
        for answer in reversed(answers):  # the last registered plugin wins a name
            merged.update(answer or {})
        return merged

    def serializers(self) -> dict[str, Serializer]:
        """Every serializer by name."""
        with collect_failures() as failures:
            answers = self.pm.hook.gigq_serializers()
        self.failed.update(failures)
        merged: dict[str, Serializer] = {}
        for answer in reversed(answers):
            merged.update(answer or {})
        return merged

    def settings(self) -> dict[str, Option[Any]]:
        """Every setting plugins declare, by name (the last registered plugin wins a name)."""
        with collect_failures() as failures:
            answers = self.pm.hook.gigq_settings()
        self.failed.update(failures)
        merged: dict[str, Option[Any]] = {}
        for answer in reversed(answers):
            merged.update(answer or {})
        return merged


def open_storage(
    target: str, options: dict[str, Any] | None = None, pm: GigQPluginManager | None = None
) -> Storage:
    """Resolve `target` (a path or URL, without settings in it) to a storage adapter."""
    hooks = Hooks(pm or get_plugin_manager())
    storage = hooks.storage(target, dict(options or {}))
    if storage is None:
        scheme = target.split("://", 1)[0] if "://" in target else target
        raise ConfigError(
            f"no storage answers '{scheme}://' URLs; is the plugin for it installed?"
            if "://" in target
            else f"no storage answers the path '{target}'; the built-in SQLite plugin is missing"
        )
    return storage


def _short(value: Any) -> str:
    if isinstance(value, JobRecord):
        return f"<job {value.id} {value.name!r}>"
    text = repr(value)
    return text if len(text) < 60 else text[:57] + "..."


__all__ = [
    "COMMANDS_HOOK",
    "DEFAULT_PLUGINS",
    "EXTENSION_HOOKS",
    "LIFECYCLE_HOOKS",
    "GigQPluginManager",
    "Hooks",
    "PluginError",
    "get_plugin_manager",
    "make_plugin_manager",
    "open_storage",
    "plugin_versions",
]
