"""The settings both SQL adapters read, declared once (`gigq_settings`), and reading an
adapter's settings from GigQ's merged options (a URL query, a config file or keyword
arguments: text or Python values alike); ConfigError names a bad value."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gigq_core.errors import ConfigError
from gigq_core.settings import Option, check_positive_seconds

#: The ways a commit may wait for the disk.
DURABILITIES = ("full", "normal")


def _check_durability(name: str, value: object) -> None:
    if value not in DURABILITIES:
        raise ConfigError(f"setting '{name}' must be 'full' or 'normal', got {value!r}")


#: How hard a commit waits for the disk.
DURABILITY: Option[str] = Option(
    default="full",
    help="full: commits survive power loss; normal: faster, the last commits may be lost",
    check=_check_durability,
)
#: How long an operation waits for a lock (or a lost connection) before it fails.
BUSY_TIMEOUT: Option[float] = Option(
    default=30.0,
    help="seconds an operation waits for the database before BusyError",
    check=check_positive_seconds,
)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def number(options: Mapping[str, Any], name: str, default: float) -> float:
    """A number of zero or more."""
    value = options.get(name, default)
    try:
        found = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, not {value!r}") from None
    if found < 0 or found != found:
        raise ConfigError(f"{name} must be zero or more, not {value!r}")
    return found


def flag(options: Mapping[str, Any], name: str, default: bool) -> bool:
    """A boolean, also written 1/0, yes/no, on/off."""
    value = options.get(name, default)
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError(f"{name} must be true or false, not {value!r}")


def durability(options: Mapping[str, Any]) -> str:
    """ "full" (commits survive power loss; the default) or "normal"."""
    value = str(options.get("durability", DURABILITY.default)).lower()
    if value not in DURABILITIES:
        raise ConfigError(f"durability must be 'full' or 'normal', not {value!r}")
    return value


__all__ = ["BUSY_TIMEOUT", "DURABILITIES", "DURABILITY", "durability", "flag", "number"]
