"""The settings chain. Highest first: keyword arguments, URL query parameters, environment
variables (`GIGQ_*`), then `[tool.gigq]` of the nearest `pyproject.toml`, or `gigq.toml`."""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from gigq_core import limits
from gigq_core.errors import ConfigError
from gigq_core.serializers import DEFAULT_MAX_PAYLOAD, MAX_PAYLOAD_LIMIT

#: Every setting with its default. README.md's "Settings" lists the same.
DEFAULTS: dict[str, Any] = {
    "db": "gigq.db",
    "durability": "full",
    "busy_timeout": 30.0,
    "journal_size_limit": 64 * 1024 * 1024,
    # Half the 64 MB bound on the WAL (docs/guarantees.md D12): it grows between checks.
    "checkpoint_threshold": 32 * 1024 * 1024,
    "max_payload": DEFAULT_MAX_PAYLOAD,
    # Limits on names, descriptions, errors, dependencies, nesting and parent results.
    **limits.DEFAULTS,
    "serializer": "json",
    "polling_interval": 5.0,
    "concurrency": 1,
    "lease": 30.0,
    "heartbeat": 5.0,
    "sweep_interval": 5.0,
    "grace": 25.0,
    # Longest a worker holds finished jobs' outcomes before one durable commit records them
    # all (group commit, docs/guarantees.md); 0 commits each outcome at once.
    "flush_interval": 0.005,
    "executor": "process",
    "max_jobs_per_child": 0,
    "max_child_memory": 0,
    "allowed_modules": (),
    "retention": 0.0,
    "allow_insecure_permissions": False,
}

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _coerce(key: str, value: Any, source: str) -> Any:
    default = DEFAULTS.get(key)
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


def from_environment(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Known settings found in `GIGQ_<NAME>` environment variables."""
    environ = os.environ if environ is None else environ
    found = {}
    for key in DEFAULTS:
        name = f"GIGQ_{key.upper()}"
        if name in environ:
            found[key] = _coerce(key, environ[name], name)
    return found


def resolve(
    target: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    config: Mapping[str, Any] | None = None,
) -> tuple[str, dict[str, Any]]:
    """Merge the chain; returns the storage target without its query, and every setting.

    `target` None takes `db` from the chain. Settings that GigQ does not know (a plugin's,
    or a storage's own) pass through from keywords, URL and config unchanged.
    """
    if config is None:
        path, config = find_config()
        config_source = str(path)
    else:
        config_source = "config"
    merged: dict[str, Any] = dict(DEFAULTS)
    for key, value in config.items():
        if not isinstance(value, dict):  # nested tables belong to plugins
            merged[key] = _coerce(key, value, config_source)
    merged.update(from_environment(environ))
    if target is None:
        target = str(merged["db"])
    base, query = split_url(target)
    for key, value in query.items():
        merged[key] = _coerce(key, value, "the URL")
    for key, value in (overrides or {}).items():
        if value is not None:
            merged[key] = _coerce(key, value, "arguments")
    merged["db"] = base
    check(merged)
    return base, merged


#: How a worker runs its jobs: in child processes, or in threads of its own process.
EXECUTORS = ("process", "inline")

#: Most jobs one worker runs at once (each in a process of its own, or a thread): a typo
#: must not fork thousands of processes; more work wants more workers.
MAX_CONCURRENCY = 1024

#: Longest duration a setting may name, in seconds (about 31 years): datetimes a worker
#: computes from it stay far from the calendar's end.
MAX_SECONDS = 1e9


def _seconds(value: Any) -> bool:
    """Whether `value` is a finite number of seconds no larger than MAX_SECONDS."""
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value <= MAX_SECONDS
    )


def check(settings: Mapping[str, Any]) -> None:
    """Refuse values out of range, with a sentence naming the setting."""
    for key in ("lease", "heartbeat", "sweep_interval", "polling_interval", "busy_timeout"):
        if not _seconds(settings[key]) or settings[key] <= 0:
            raise ConfigError(
                f"setting '{key}' must be a positive number of seconds up to "
                f"{MAX_SECONDS:g}, got {settings[key]!r}"
            )
    if not _seconds(settings["retention"]) or settings["retention"] < 0:
        raise ConfigError(
            f"setting 'retention' must be zero (off) or a number of seconds up to "
            f"{MAX_SECONDS:g}, got {settings['retention']!r}"
        )
    flush = settings["flush_interval"]
    if not isinstance(flush, int | float) or not 0 <= flush <= 1:
        raise ConfigError(f"setting 'flush_interval' must be between 0 and 1 second, got {flush!r}")
    if not _seconds(settings["grace"]) or settings["grace"] < 0:
        raise ConfigError(
            f"setting 'grace' must be zero or a number of seconds up to {MAX_SECONDS:g}, "
            f"got {settings['grace']!r}"
        )
    if settings["heartbeat"] >= settings["lease"]:
        raise ConfigError(
            f"setting 'heartbeat' ({settings['heartbeat']}) must be shorter than "
            f"'lease' ({settings['lease']}), or live workers would lose their jobs"
        )
    payload = settings["max_payload"]
    if not isinstance(payload, int) or not 0 < payload <= MAX_PAYLOAD_LIMIT:
        raise ConfigError(
            f"setting 'max_payload' must be between 1 and {MAX_PAYLOAD_LIMIT} bytes, "
            f"got {payload!r}"
        )
    limits.check_settings(settings)
    concurrency = settings["concurrency"]
    if (
        isinstance(concurrency, bool)
        or not isinstance(concurrency, int)
        or not 1 <= concurrency <= MAX_CONCURRENCY
    ):
        raise ConfigError(
            f"setting 'concurrency' must be a whole number from 1 to {MAX_CONCURRENCY}, "
            f"got {concurrency!r}"
        )
    if settings["executor"] not in EXECUTORS:
        raise ConfigError(
            f"setting 'executor' must be one of {', '.join(EXECUTORS)}, "
            f"got {settings['executor']!r}"
        )
    for key in ("max_jobs_per_child", "max_child_memory"):
        value = settings[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(
                f"setting '{key}' must be zero (off) or a whole number, got {value!r}"
            )
    if settings["durability"] not in ("full", "normal"):
        raise ConfigError(
            f"setting 'durability' must be 'full' or 'normal', got {settings['durability']!r}"
        )


__all__ = ["DEFAULTS", "EXECUTORS", "find_config", "from_environment", "resolve", "split_url"]
