"""The plugin that answers the storage hook for plain paths and `sqlite:///` URLs."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from gigq_core.errors import ConfigError
from gigq_core.hookspecs import hookimpl
from gigq_core.settings import Option
from gigq_sql.options import BUSY_TIMEOUT, DURABILITY, durability, flag, number

if TYPE_CHECKING:
    from gigq_sqlite.storage import SqliteStorage

_MIB = 1024 * 1024

#: Bytes the WAL is truncated back to after a checkpoint (docs/guarantees.md D12).
JOURNAL_SIZE_LIMIT: Option[int] = Option(
    default=64 * _MIB, help="bytes the WAL is truncated back to after a checkpoint"
)
#: WAL size past which workers and submitters checkpoint: half the 64 MB bound on the WAL
#: (docs/guarantees.md D12), as it grows between two checks.
CHECKPOINT_THRESHOLD: Option[int] = Option(
    default=32 * _MIB, help="bytes of WAL past which workers and submitters checkpoint it"
)

#: Whether a new database's missing folders are created: off, so a mistyped folder is an
#: error rather than a new, empty queue nobody serves.
CREATE_FOLDERS: Option[bool] = Option(
    default=False, help="create the missing folders of a new database's path"
)

#: The SQLite storage's own settings, read through GigQ's chain (`gigq_settings`).
OPTIONS: dict[str, Option[Any]] = {
    "durability": DURABILITY,
    "busy_timeout": BUSY_TIMEOUT,
    "journal_size_limit": JOURNAL_SIZE_LIMIT,
    "checkpoint_threshold": CHECKPOINT_THRESHOLD,
    "create_folders": CREATE_FOLDERS,
}


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
    # Imported here: loading the plugin (every `gigq` start) must not load sqlite3.
    from gigq_sqlite.storage import SqliteStorage

    return SqliteStorage(
        path,
        url=url,
        durability=durability(options),
        busy_timeout=number(options, "busy_timeout", BUSY_TIMEOUT.default),
        journal_size_limit=int(number(options, "journal_size_limit", JOURNAL_SIZE_LIMIT.default)),
        checkpoint_threshold=int(
            number(options, "checkpoint_threshold", CHECKPOINT_THRESHOLD.default)
        ),
        create=flag(options, "create", True),
        create_folders=flag(options, "create_folders", False),
        read_only=flag(options, "read_only", False),
        upgrading=flag(options, "upgrading", False),
        allow_insecure_permissions=flag(options, "allow_insecure_permissions", False),
    )


@hookimpl(trylast=True)
def gigq_storage(url: str, options: dict[str, Any]) -> SqliteStorage | None:
    """Answer plain paths and sqlite:/// URLs."""
    return open_sqlite(url, options)


@hookimpl
def gigq_settings() -> dict[str, Option[Any]]:
    """The SQLite storage's own settings."""
    return OPTIONS


__all__ = ["OPTIONS", "gigq_settings", "gigq_storage", "open_sqlite", "path_from_url"]
