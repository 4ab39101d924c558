"""The plugin manager: built-in plugins, entry points of group `gigq`, and safe hook calls."""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pluggy
from pluggy import HookImpl, Result

from gigq_core import hookspecs
from gigq_core.errors import ConfigError, GigQError, PluginError
from gigq_core.records import ErrorInfo, JobRecord

if TYPE_CHECKING:
    from datetime import datetime

    from gigq_core.hookspecs import CommandGroup
    from gigq_core.ports import Serializer, Storage
    from gigq_core.queue import JobQueue

log = logging.getLogger("gigq.plugins")

#: The distribution whose plugins always load.
DISTRIBUTION = "gigq"
#: The core's own default plugins: name -> module.
DEFAULT_PLUGINS = {
    "memory": "gigq_core.memory",
    "retry": "gigq_core.retry",
    "json": "gigq_core.serializers",
}


def _disabled(environ: dict[str, str] | os._Environ[str]) -> tuple[bool, set[str]]:
    raw = environ.get("GIGQ_DISABLE_PLUGINS", "")
    names = {part.strip() for part in raw.split(",") if part.strip()}
    return "*" in names, names - {"*"}


def make_plugin_manager(load_entrypoints: bool = True) -> pluggy.PluginManager:
    """A fresh plugin manager with the specs, the built-in plugins and (optionally) the
    third-party plugins of entry point group `gigq`.

    The built-ins of the `gigq` distribution always load. A plugin that fails to load is
    logged, recorded in `pm.gigq_failures` (name -> message) and skipped.
    """
    pm = pluggy.PluginManager(hookspecs.NAME)
    pm.add_hookspecs(hookspecs)
    failures: dict[str, str] = {}
    pm.gigq_failures = failures  # type: ignore[attr-defined]
    versions: dict[str, str] = {}
    pm.gigq_versions = versions  # type: ignore[attr-defined]
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
            failures[entry.name] = message
            log.warning("%s", message)
        else:
            if entry.dist is not None:
                versions[entry.name] = entry.dist.version
    if os.environ.get("GIGQ_TRACE_PLUGINS", "") not in ("", "0"):
        _trace(pm)
    return pm


def _trace(pm: pluggy.PluginManager) -> None:
    def before(name: str, impls: Sequence[HookImpl], kwargs: Mapping[str, Any]) -> None:
        log.info("hook %s(%s) -> %s", name, ", ".join(kwargs), [i.plugin_name for i in impls])

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
    pm.add_hookcall_monitoring(before, after)
    pm.gigq_traced = True  # type: ignore[attr-defined]


_default: pluggy.PluginManager | None = None
_default_lock = threading.Lock()


def get_plugin_manager() -> pluggy.PluginManager:
    """The process's default plugin manager, created on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = make_plugin_manager()
        return _default


def plugin_versions(pm: pluggy.PluginManager) -> list[tuple[str, str, list[str]]]:
    """(name, version, hooks implemented) for every registered plugin."""
    dists = {id(plugin): dist for plugin, dist in pm.list_plugin_distinfo()}
    versions: dict[str, str] = getattr(pm, "gigq_versions", {})
    rows = []
    for name, plugin in pm.list_name_plugin():
        if plugin is None:
            continue
        dist = dists.get(id(plugin))
        version = versions.get(name) or (dist.version if dist is not None else _own_version())
        hooks = sorted(impl.name for impl in pm.get_hookcallers(plugin) or ())
        rows.append((name, version, hooks))
    return rows


def _own_version() -> str:
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


class Hooks:
    """Typed, isolated calls of the hooks: one method per hook.

    A lifecycle implementation that raises is logged with its plugin's name and never stops
    the other implementations, fails a job or loses one.
    """

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self.pm = pm
        #: Hook name -> the last failure of a plugin in it (see `_answers`).
        self.failed: dict[str, str] = {}

    def _notify(self, hook: str, **kwargs: Any) -> None:
        caller = getattr(self.pm.hook, hook)
        impls = caller.get_hookimpls()
        if not impls:
            return
        if getattr(self.pm, "gigq_traced", False):
            log.info("hook %s(%s)", hook, ", ".join(f"{k}={_short(v)}" for k, v in kwargs.items()))
        for impl in reversed(impls):  # pluggy's own call order: last registered first
            try:
                impl.function(**{arg: kwargs[arg] for arg in impl.argnames})
            except Exception:  # plugin isolation: a raising hook must not change the job
                log.exception("plugin '%s' raised in %s", impl.plugin_name, hook)

    def register_commands(self, cli: CommandGroup) -> None:
        """Call gigq_register_commands; a plugin that raises is logged on one line, recorded
        in `pm.gigq_failures`, and its commands are left out, so every other command works."""
        commands = getattr(cli, "commands", None)  # a click.Group's name -> command dict
        for impl in reversed(self.pm.hook.gigq_register_commands.get_hookimpls()):
            before = dict(commands) if isinstance(commands, dict) else None
            try:
                impl.function(**{arg: cli for arg in impl.argnames})
            # Plugin isolation: this runs on every gigq command, so whatever the plugin
            # raises (even SystemExit) must not stop the others or the built-in commands.
            except BaseException as err:
                if before is not None and isinstance(commands, dict):
                    commands.clear()
                    commands.update(before)
                message = f"plugin '{impl.plugin_name}' failed to add its commands: {err!r}"
                getattr(self.pm, "gigq_failures", {})[impl.plugin_name] = message
                log.warning("%s", message)

    def wanted(self, event: str) -> bool:
        """Whether any plugin implements `gigq_job_<event>` (to skip work only it needs)."""
        return bool(getattr(self.pm.hook, f"gigq_job_{event}").get_hookimpls())

    def job_submitted(self, job: JobRecord) -> None:
        """Fire gigq_job_submitted."""
        self._notify("gigq_job_submitted", job=job)

    def job_started(self, job: JobRecord, attempt: int, worker_id: str) -> None:
        """Fire gigq_job_started."""
        self._notify("gigq_job_started", job=job, attempt=attempt, worker_id=worker_id)

    def job_succeeded(self, job: JobRecord, result: Any, duration: float) -> None:
        """Fire gigq_job_succeeded."""
        self._notify("gigq_job_succeeded", job=job, result=result, duration=duration)

    def job_failed(self, job: JobRecord, error: ErrorInfo, final: bool) -> None:
        """Fire gigq_job_failed."""
        self._notify("gigq_job_failed", job=job, error=error, final=final)

    def job_retrying(self, job: JobRecord, error: ErrorInfo, delay: float) -> None:
        """Fire gigq_job_retrying."""
        self._notify("gigq_job_retrying", job=job, error=error, delay=delay)

    def job_cancelled(self, job: JobRecord, reason: str) -> None:
        """Fire gigq_job_cancelled."""
        self._notify("gigq_job_cancelled", job=job, reason=reason)

    def job_timed_out(self, job: JobRecord, final: bool) -> None:
        """Fire gigq_job_timed_out."""
        self._notify("gigq_job_timed_out", job=job, final=final)

    def worker_started(self, worker_id: str) -> None:
        """Fire gigq_worker_started."""
        self._notify("gigq_worker_started", worker_id=worker_id)

    def worker_stopped(self, worker_id: str) -> None:
        """Fire gigq_worker_stopped."""
        self._notify("gigq_worker_stopped", worker_id=worker_id)

    def worker_tick(self, worker_id: str, now: datetime, queue: JobQueue) -> None:
        """Fire gigq_worker_tick."""
        self._notify("gigq_worker_tick", worker_id=worker_id, now=now, queue=queue)

    def _answers(self, hook: str, **kwargs: Any) -> Iterator[tuple[str, Any]]:
        """(plugin name, answer) of each implementation of an extension hook, in pluggy's
        call order. One that raises anything but a GigQError (which is its answer to the
        user, e.g. an unreachable server) is logged on one line with its plugin's name and
        skipped, so a broken plugin cannot break every command."""
        impls = getattr(self.pm.hook, hook).get_hookimpls()
        if getattr(self.pm, "gigq_traced", False):
            log.info("hook %s(%s)", hook, ", ".join(f"{k}={_short(v)}" for k, v in kwargs.items()))
        for impl in reversed(impls):  # pluggy's own call order: last registered first
            try:
                answer = impl.function(**{arg: kwargs[arg] for arg in impl.argnames})
            except GigQError:
                raise
            except Exception as err:  # plugin isolation: see the docstring
                log.warning("plugin '%s' failed in %s: %r", impl.plugin_name, hook, err)
                self.failed[hook] = f"plugin '{impl.plugin_name}' failed in {hook}: {err!r}"
                continue
            yield impl.plugin_name, answer

    def storage(self, url: str, options: dict[str, Any]) -> Storage | None:
        """The first adapter that answers `url`."""
        for _, answer in self._answers("gigq_storage", url=url, options=options):
            if answer is not None:
                result: Storage = answer
                return result
        if "gigq_storage" in self.failed:
            raise PluginError(self.failed["gigq_storage"])
        return None

    def retry_strategies(self) -> dict[str, Callable[..., Any]]:
        """Every retry strategy factory by name (plugins may add names)."""
        merged: dict[str, Callable[..., Any]] = {}
        answers = [answer for _, answer in self._answers("gigq_retry_strategies")]
        for answer in reversed(answers):
            merged.update(answer or {})
        return merged

    def serializers(self) -> dict[str, Serializer]:
        """Every serializer by name."""
        merged: dict[str, Serializer] = {}
        for answer in reversed([answer for _, answer in self._answers("gigq_serializers")]):
            merged.update(answer or {})
        return merged


def _short(value: Any) -> str:
    if isinstance(value, JobRecord):
        return f"<job {value.id} {value.name!r}>"
    text = repr(value)
    return text if len(text) < 60 else text[:57] + "..."


def open_storage(
    target: str, options: dict[str, Any] | None = None, pm: pluggy.PluginManager | None = None
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


__all__ = [
    "DEFAULT_PLUGINS",
    "Hooks",
    "PluginError",
    "get_plugin_manager",
    "make_plugin_manager",
    "open_storage",
    "plugin_versions",
]
