"""The settings chain. Highest first: keyword arguments, URL query parameters, environment
variables (`GIGQ_*`), then `[tool.gigq]` of the nearest `pyproject.toml`, or `gigq.toml`.

GigQ's own settings are the fields of `Settings`. A plugin declares the settings it reads (a
storage's durability, say) through the `gigq_settings` hook, each an `Option`: they go
through the same chain and checks, and land in `Settings.options` with every setting that
nobody declares (those pass through unchanged).
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Generic, TypeVar
from urllib.parse import parse_qsl

import attrs

from gigq_core import limits
from gigq_core.errors import ConfigError
from gigq_core.serializers import DEFAULT_MAX_PAYLOAD, MAX_PAYLOAD_LIMIT

T = TypeVar("T")

#: How a worker runs its jobs: in child processes, or in threads of its own process.
EXECUTORS = ("process", "inline")

#: Most jobs one worker runs at once (each in a process of its own, or a thread): a typo
#: must not fork thousands of processes; more work wants more workers.
MAX_CONCURRENCY = 1024

#: The levels `retry_log_level` may name (any case).
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

#: Longest duration a setting may name, in seconds (about 31 years): datetimes a worker
#: computes from it stay far from the calendar's end.
MAX_SECONDS = 1e9


@attrs.frozen(kw_only=True)
class Option(Generic[T]):
    """A setting a plugin reads, as it declares it through the `gigq_settings` hook."""

    #: The value when no source sets it. Its type (bool, int, float, str or tuple) is how a
    #: text value from the environment, a URL or a config file is read.
    default: T
    #: What the setting does, in one line.
    help: str = ""
    #: Called with the setting's name and merged value; raises ConfigError naming the setting.
    check: Callable[[str, Any], None] | None = None


def _read_only(options: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(options))


@attrs.frozen(kw_only=True)
class Settings:
    """GigQ's own settings, checked at creation (a ConfigError names a bad one), and in
    `options` every other setting: those plugins declare, and those nobody declares."""

    #: The queue's path or URL, without its query string.
    db: str = "gigq.db"
    #: Largest serialized params or result, in bytes.
    max_payload: int = DEFAULT_MAX_PAYLOAD
    #: Longest job name, queue name, workflow name, job id, unique key or worker id.
    max_name_length: int = limits.DEFAULT_MAX_NAME_LENGTH
    #: Longest job description.
    max_description_length: int = limits.DEFAULT_MAX_DESCRIPTION_LENGTH
    #: Longest error message, and traceback, kept of a failed attempt.
    max_error_length: int = limits.DEFAULT_MAX_ERROR_LENGTH
    #: Most dependencies of one job.
    max_dependencies: int = limits.DEFAULT_MAX_DEPENDENCIES
    #: Most bytes of serialized results one job may get as `parent_results`.
    max_parent_results: int = limits.DEFAULT_MAX_PARENT_RESULTS
    #: Deepest nesting of a job's params as JSON.
    max_nesting_depth: int = limits.DEFAULT_MAX_NESTING_DEPTH
    #: Name of the params/result serializer.
    serializer: str = "json"
    #: Longest idle wait of a worker, in seconds.
    polling_interval: float = 5.0
    #: Jobs a worker runs at once.
    concurrency: int = 1
    #: Level (one of LOG_LEVELS) of a worker's log record of a failed attempt that will be
    #: retried; a job failing for good is logged at ERROR whatever this says.
    retry_log_level: str = "WARNING"
    #: Seconds a claimed job belongs to its worker without a heartbeat.
    lease: float = 30.0
    #: Seconds between heartbeats.
    heartbeat: float = 5.0
    #: Seconds between rescue sweeps.
    sweep_interval: float = 5.0
    #: Seconds a stopping worker lets running jobs finish.
    grace: float = 25.0
    #: Longest one plugin's lifecycle hook may run in a worker (on its hook thread, which
    #: the loop does not wait for): one still running then is reported and not called again.
    hook_timeout: float = 30.0
    #: Longest a worker holds finished jobs' outcomes before one durable commit records them
    #: all (group commit, docs/guarantees.md); 0 commits each outcome at once.
    flush_interval: float = 0.005
    #: Most expected run time (seconds) of the jobs a worker holds beyond its free slots
    #: ("reserved", claimed ahead so one transaction claims many); estimated from the
    #: recent durations of each function here. 0 turns prefetch off. Jobs of a function
    #: without recent durations, or slower than this, are never reserved.
    prefetch_window: float = 0.05
    #: Most jobs a worker holds reserved at once.
    prefetch_max: int = 32
    #: How a worker runs its jobs (one of EXECUTORS).
    executor: str = "process"
    #: Jobs after which a child process is recycled (0: never).
    max_jobs_per_child: int = 0
    #: MiB of resident memory past which a child process is recycled (0: never).
    max_child_memory: int = 0
    #: End what a job left running when it returns (process executor, Linux): nothing a
    #: job started outlives its attempt unless this is off.
    kill_leftovers: bool = True
    #: Seconds those leftovers get between SIGTERM and SIGKILL.
    leftover_grace: float = 2.0
    #: Patterns of the modules whose functions workers may run.
    allowed_modules: tuple[str, ...] = ()
    #: Seconds after which workers delete completed and cancelled jobs (0: never).
    retention: float = 0.0
    #: Trust database files other users own or may write.
    allow_insecure_permissions: bool = False
    #: Every other setting by name: the options plugins declare (a storage's), with their
    #: defaults, and any setting nobody declares, as it was given.
    options: Mapping[str, Any] = attrs.field(factory=dict, converter=_read_only)

    def __attrs_post_init__(self) -> None:
        check(self)

    def as_dict(self) -> dict[str, Any]:
        """Every setting by name, GigQ's own and the others: what the storage hook gets."""
        found = {name: getattr(self, name) for name in DEFAULTS}
        found.update(self.options)
        return found


#: GigQ's own settings with their defaults (README.md's "Settings" lists them too).
DEFAULTS: dict[str, Any] = {
    field.name: field.default for field in attrs.fields(Settings) if field.name != "options"
}

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _coerce(key: str, value: Any, source: str, defaults: Mapping[str, Any]) -> Any:
    default = defaults.get(key)
    if default is None or not isinstance(value, str):
        if isinstance(default, tuple) and isinstance(value, list):
            return tuple(value)
        return value
    try:
        if isinstance(default, bool):
            lowered = value.strip().lower()
            if lowered in _TRUE:
                return True
            if lowered in _FALSE:
                return False
            raise ValueError(value)
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
        if isinstance(default, tuple):
            return tuple(part.strip() for part in value.split(",") if part.strip())
    except ValueError:
        raise ConfigError(
            f"setting '{key}' from {source} must be a {type(default).__name__}, got {value!r}"
        ) from None
    return value


def split_url(target: str) -> tuple[str, dict[str, str]]:
    """Split `target` into the URL without its query string and the query parameters."""
    if "://" not in target or "?" not in target:
        return target, {}
    base, _, query = target.partition("?")
    return base, dict(parse_qsl(query, keep_blank_values=True))


def find_config(start: Path | None = None) -> tuple[Path | None, dict[str, Any]]:
    """The nearest `gigq.toml`, or `pyproject.toml` with a `[tool.gigq]` table, upwards."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        gigq_toml = folder / "gigq.toml"
        if gigq_toml.is_file():
            return gigq_toml, _read_toml(gigq_toml)
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file():
            table = _read_toml(pyproject).get("tool", {}).get("gigq")
            if isinstance(table, dict):
                return pyproject, table
    return None, {}


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise ConfigError(f"cannot read settings from {path}: {err}") from None


def _defaults(declared: Mapping[str, Option[Any]]) -> dict[str, Any]:
    """Every known setting's default: GigQ's own, then the declared ones it does not have."""
    found = {name: option.default for name, option in declared.items()}
    found.update(DEFAULTS)
    return found


def from_environment(
    environ: Mapping[str, str] | None = None, declared: Mapping[str, Option[Any]] | None = None
) -> dict[str, Any]:
    """Known settings (GigQ's own and `declared`) found in `GIGQ_<NAME>` variables."""
    environ = os.environ if environ is None else environ
    defaults = _defaults(declared or {})
    found = {}
    for key in defaults:
        name = f"GIGQ_{key.upper()}"
        if name in environ:
            found[key] = _coerce(key, environ[name], name, defaults)
    return found


def resolve(
    target: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    declared: Mapping[str, Option[Any]] | None = None,
    environ: Mapping[str, str] | None = None,
    config: Mapping[str, Any] | None = None,
) -> tuple[str, Settings]:
    """Merge the chain; returns the storage target without its query, and the settings.

    `target` None takes `db` from the chain. `declared` are the settings plugins read
    (`Hooks.settings()`): read and checked like GigQ's own. Settings that nobody declares
    pass through from keywords, URL and config unchanged.
    """
    if config is None:
        path, config = find_config()
        config_source = str(path)
    else:
        config_source = "config"
    declared = declared or {}
    defaults = _defaults(declared)
    merged: dict[str, Any] = dict(defaults)
    for key, value in config.items():
        if not isinstance(value, dict):  # nested tables belong to plugins
            merged[key] = _coerce(key, value, config_source, defaults)
    merged.update(from_environment(environ, declared))
    if target is None:
        target = str(merged["db"])
    base, query = split_url(target)
    for key, value in query.items():
        merged[key] = _coerce(key, value, "the URL", defaults)
    for key, value in (overrides or {}).items():
        if value is not None:
            merged[key] = _coerce(key, value, "arguments", defaults)
    merged["db"] = base
    return base, build(merged, declared)


def build(values: Mapping[str, Any], declared: Mapping[str, Option[Any]]) -> Settings:
    """Settings from every setting by name, checked: GigQ's own, then the `declared` ones."""
    own = {key: value for key, value in values.items() if key in DEFAULTS}
    others = {key: value for key, value in values.items() if key not in DEFAULTS}
    settings = Settings(**own, options=others)
    for name, option in declared.items():
        if name not in DEFAULTS and option.check is not None:
            option.check(name, settings.options.get(name, option.default))
    return settings


def override(
    settings: Settings, overrides: Mapping[str, Any], declared: Mapping[str, Option[Any]]
) -> Settings:
    """`settings` with keyword `overrides` (None: not given) put over them, checked again."""
    given = {key: value for key, value in overrides.items() if value is not None}
    return build({**settings.as_dict(), **given}, declared)


def _is_seconds(value: Any) -> bool:
    """Whether `value` is a finite number of seconds no larger than MAX_SECONDS."""
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value <= MAX_SECONDS
    )


def check_positive_seconds(name: str, value: Any) -> None:
    """Refuse a value that is not a positive number of seconds up to MAX_SECONDS."""
    if not _is_seconds(value) or value <= 0:
        raise ConfigError(
            f"setting '{name}' must be a positive number of seconds up to "
            f"{MAX_SECONDS:g}, got {value!r}"
        )


def _is_count(value: Any) -> bool:
    """Whether `value` is a whole number (a bool is not)."""
    return isinstance(value, int) and not isinstance(value, bool)


def check(settings: Settings) -> None:
    """Refuse values out of range, with a sentence naming the setting."""
    _check_durations(settings)
    payload = settings.max_payload
    if not isinstance(payload, int) or not 0 < payload <= MAX_PAYLOAD_LIMIT:
        raise ConfigError(
            f"setting 'max_payload' must be between 1 and {MAX_PAYLOAD_LIMIT} bytes, "
            f"got {payload!r}"
        )
    limits.check_settings(settings)
    concurrency = settings.concurrency
    if not _is_count(concurrency) or not 1 <= concurrency <= MAX_CONCURRENCY:
        raise ConfigError(
            f"setting 'concurrency' must be a whole number from 1 to {MAX_CONCURRENCY}, "
            f"got {concurrency!r}"
        )
    if not isinstance(settings.kill_leftovers, bool):
        raise ConfigError(
            f"setting 'kill_leftovers' must be true or false, got {settings.kill_leftovers!r}"
        )
    if settings.executor not in EXECUTORS:
        raise ConfigError(
            f"setting 'executor' must be one of {', '.join(EXECUTORS)}, got {settings.executor!r}"
        )
    level = settings.retry_log_level
    if not isinstance(level, str) or level.upper() not in LOG_LEVELS:
        raise ConfigError(
            f"setting 'retry_log_level' must be one of {', '.join(LOG_LEVELS)}, got {level!r}"
        )
    for key, value in (
        ("max_jobs_per_child", settings.max_jobs_per_child),
        ("max_child_memory", settings.max_child_memory),
        ("prefetch_max", settings.prefetch_max),
    ):
        if not _is_count(value) or value < 0:
            raise ConfigError(
                f"setting '{key}' must be zero (off) or a whole number, got {value!r}"
            )


def _check_durations(settings: Settings) -> None:
    for key, value in (
        ("lease", settings.lease),
        ("heartbeat", settings.heartbeat),
        ("sweep_interval", settings.sweep_interval),
        ("polling_interval", settings.polling_interval),
        ("hook_timeout", settings.hook_timeout),
    ):
        check_positive_seconds(key, value)
    if not _is_seconds(settings.retention) or settings.retention < 0:
        raise ConfigError(
            f"setting 'retention' must be zero (off) or a number of seconds up to "
            f"{MAX_SECONDS:g}, got {settings.retention!r}"
        )
    flush = settings.flush_interval
    if not isinstance(flush, int | float) or not 0 <= flush <= 1:
        raise ConfigError(f"setting 'flush_interval' must be between 0 and 1 second, got {flush!r}")
    window = settings.prefetch_window
    if not isinstance(window, int | float) or isinstance(window, bool) or not 0 <= window <= 1:
        raise ConfigError(
            f"setting 'prefetch_window' must be between 0 (off) and 1 second, got {window!r}"
        )
    for key, value in (("grace", settings.grace), ("leftover_grace", settings.leftover_grace)):
        if not _is_seconds(value) or value < 0:
            raise ConfigError(
                f"setting '{key}' must be zero or a number of seconds up to {MAX_SECONDS:g}, "
                f"got {value!r}"
            )
    if settings.heartbeat >= settings.lease:
        raise ConfigError(
            f"setting 'heartbeat' ({settings.heartbeat}) must be shorter than "
            f"'lease' ({settings.lease}), or live workers would lose their jobs"
        )


__all__ = [
    "DEFAULTS",
    "EXECUTORS",
    "LOG_LEVELS",
    "MAX_SECONDS",
    "Option",
    "Settings",
    "build",
    "check_positive_seconds",
    "find_config",
    "from_environment",
    "override",
    "resolve",
    "split_url",
]
