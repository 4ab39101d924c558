"""The plugin that answers the storage hook for plain paths and `sqlite:///` URLs."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from gigq_core.errors import ConfigError
from gigq_core.hookspecs import hookimpl

if TYPE_CHECKING:
    from gigq_sqlite.storage import SqliteStorage

_MIB = 1024 * 1024
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def path_from_url(url: str) -> str | None:
    """The file path a target names, or None when it is another scheme's URL.

    Plain paths (no "://") and `sqlite:///path` URLs are ours; `sqlite:////abs/path` is
    absolute and `sqlite:///rel/path` relative. A `?query` is dropped: the core has already
    merged its parameters into the options.
    """
    target = url.split("?", 1)[0]
    if "://" not in target:
        path = os.path.expanduser(target)
    elif target.startswith("sqlite://"):
        if not target.startswith("sqlite:///"):
            raise ConfigError(
                f"invalid SQLite URL {url!r}: use sqlite:///relative/path or "
                "sqlite:////absolute/path"
            )
        path = target[len("sqlite:///") :]
    else:
        return None
    if not path:
        raise ConfigError(f"no database path in {url!r}")
    if path == ":memory:":
        raise ConfigError("SQLite :memory: databases are not supported; use memory://NAME")
    return path


def open_sqlite(url: str, options: dict[str, Any]) -> SqliteStorage | None:
    """A SqliteStorage for `url` configured from `options`, or None if `url` is not ours."""
    path = path_from_url(url)
    if path is None:
        return None
    durability = str(options.get("durability", "full")).lower()
    if durability not in ("full", "normal"):
        raise ConfigError(f"durability must be 'full' or 'normal', not {durability!r}")
    # Imported here: loading the plugin (every `gigq` start) must not load sqlite3.
    from gigq_sqlite.storage import SqliteStorage

    return SqliteStorage(
        path,
        url=url,
        durability=durability,
        busy_timeout=_number(options, "busy_timeout", 30.0),
        journal_size_limit=int(_number(options, "journal_size_limit", 64 * _MIB)),
        checkpoint_threshold=int(_number(options, "checkpoint_threshold", 32 * _MIB)),
        create=_flag(options, "create", True),
        read_only=_flag(options, "read_only", False),
        upgrading=_flag(options, "upgrading", False),
        allow_insecure_permissions=_flag(options, "allow_insecure_permissions", False),
    )


def _number(options: dict[str, Any], name: str, default: float) -> float:
    value = options.get(name, default)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, not {value!r}") from None
    if number < 0 or number != number:
        raise ConfigError(f"{name} must be zero or more, not {value!r}")
    return number


def _flag(options: dict[str, Any], name: str, default: bool) -> bool:
    value = options.get(name, default)
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError(f"{name} must be true or false, not {value!r}")


@hookimpl(trylast=True)
def gigq_storage(url: str, options: dict[str, Any]) -> SqliteStorage | None:
    """Answer plain paths and sqlite:/// URLs."""
    return open_sqlite(url, options)


__all__ = ["gigq_storage", "open_sqlite", "path_from_url"]
