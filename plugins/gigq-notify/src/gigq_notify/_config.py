"""The settings of gigq-notify: `[tool.gigq.notify]`, overridden by `GIGQ_NOTIFY_*`."""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from gigq.plugin import ConfigError, find_config

from gigq_notify._redaction import (
    command_secrets,
    header_secrets,
    redact,
    redact_command,
    redact_url,
    url_secrets,
)

#: Every event a notification can be sent for.
EVENTS = (
    "submitted",
    "started",
    "succeeded",
    "failed",
    "retrying",
    "cancelled",
    "timed_out",
    "worker_started",
    "worker_stopped",
)
#: Events sent when `events` is not set: a job that ended badly for good.
DEFAULT_EVENTS = ("failed", "timed_out")
#: The environment variable prefix of the settings.
ENV_PREFIX = "GIGQ_NOTIFY_"


@dataclass(frozen=True)
class NotifyConfig:
    """Where notifications go, for which events, and how hard to try."""

    #: URL that receives a JSON POST per event (http or https), or None.
    webhook_url: str | None = None
    #: Program and arguments run per event (no shell), or empty.
    command: tuple[str, ...] = ()
    #: Events that send a notification.
    events: frozenset[str] = frozenset(DEFAULT_EVENTS)
    #: Seconds one webhook request (connect to last byte) or one command run may take.
    timeout: float = 5.0
    #: Further tries after a failed one.
    retries: int = 2
    #: Seconds before the first retry; doubled for each further one (capped at 5 s).
    backoff: float = 0.5
    #: Extra HTTP headers of the webhook request (e.g. an Authorization token).
    headers: Mapping[str, str] = field(default_factory=dict)
    #: Notifications waiting to be sent at most; past that new ones are dropped and logged.
    queue_size: int = 1000
    #: Seconds a stopping worker (or exiting process) waits for unsent notifications.
    flush_timeout: float = 10.0

    @property
    def is_enabled(self) -> bool:
        """True when there is somewhere to send to."""
        return bool(self.webhook_url or self.command)

    @property
    def secrets(self) -> tuple[str, ...]:
        """What must never be shown: header values, the URL's credentials, query values and
        token-like path parts, the command's token arguments."""
        found = url_secrets(self.webhook_url) if self.webhook_url else []
        for name, value in self.headers.items():
            found += header_secrets(name, value)
        found += command_secrets(self.command)
        return tuple(dict.fromkeys(found))

    def shown_webhook(self) -> str:
        """The webhook URL, for display: credentials, query values and tokens masked."""
        return redact(redact_url(self.webhook_url or ""), self.secrets)

    def shown_command(self) -> str:
        """The command line, for display: its secrets masked."""
        return redact_command(self.command, self.secrets)


_FIELDS = {
    "webhook_url",
    "command",
    "events",
    "timeout",
    "retries",
    "backoff",
    "headers",
    "queue_size",
    "flush_timeout",
}


def load_config(
    environ: Mapping[str, str] | None = None, table: Mapping[str, Any] | None = None
) -> NotifyConfig:
    """The settings from `[tool.gigq.notify]` (or `table`) and `GIGQ_NOTIFY_*` (higher)."""
    environ = os.environ if environ is None else environ
    if table is None:
        path, config = find_config()
        raw = config.get("notify", {})
        source = f"[tool.gigq.notify] of {path}" if path else "[tool.gigq.notify]"
    else:
        raw, source = table, "[tool.gigq.notify]"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source} must be a table")
    values: dict[str, tuple[Any, str]] = {}
    for key, value in raw.items():
        if key not in _FIELDS:
            known = ", ".join(sorted(_FIELDS))
            raise ConfigError(f"unknown setting '{key}' in {source} (known: {known})")
        values[key] = (value, source)
    for key in _FIELDS:
        name = ENV_PREFIX + key.upper()
        if name in environ:
            values[key] = (environ[name], name)
    return _build({key: _convert(key, value, where) for key, (value, where) in values.items()})


#: Builds the error of a bad setting from what was expected.
_Bad = Callable[[str], ConfigError]


def _convert(key: str, value: Any, where: str) -> Any:
    """One setting, checked and converted; strings (from the environment) are parsed."""

    def bad(expected: str) -> ConfigError:
        return ConfigError(
            f"notify setting '{key}' from {where} must be {expected}, got {_shown(key, value)}"
        )

    return _CONVERTERS[key](key, value, bad)


def _webhook_url(key: str, value: Any, bad: _Bad) -> str | None:
    """An http(s) URL with a host and a valid port; blank means none."""
    if not isinstance(value, str):
        raise bad("a URL")
    if not value.strip():
        return None
    try:
        parts = urlsplit(value.strip())
        parts.port  # noqa: B018 -- parsing the port is what checks it
    except ValueError:
        raise bad("an http:// or https:// URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise bad("an http:// or https:// URL")
    return value.strip()


def _command(key: str, value: Any, bad: _Bad) -> tuple[str, ...]:
    """A command line split like a shell would, or a list of arguments."""
    if isinstance(value, str):
        try:
            return tuple(shlex.split(value))
        except ValueError:
            raise bad("a command line that splits into arguments") from None
    if isinstance(value, list | tuple) and all(isinstance(a, str) for a in value):
        return tuple(value)
    raise bad("a list of strings (the program and its arguments)")


def _events(key: str, value: Any, bad: _Bad) -> frozenset[str]:
    """Event names, comma-separated or a list; '*' means every event."""
    names = value.split(",") if isinstance(value, str) else value
    if not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names):
        raise bad("a list of event names")
    chosen = frozenset(n.strip() for n in names if n.strip())
    unknown = chosen - set(EVENTS) - {"*"}
    if unknown:
        raise bad(f"a list of events from {', '.join(EVENTS)} (or '*')")
    return frozenset(EVENTS) if "*" in chosen else chosen


def _headers(key: str, value: Any, bad: _Bad) -> dict[str, str]:
    """Header names to string values, a table or a JSON object."""
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else {}
        except ValueError:
            raise bad("a JSON object of header names to values") from None
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise bad("a table of header names to string values")
    return dict(value)


def _count(key: str, value: Any, bad: _Bad) -> int:
    """A whole number: zero or more retries, a queue of at least 1."""
    try:
        number = int(value) if not isinstance(value, bool) else -1
    except (TypeError, ValueError):
        raise bad("a whole number") from None
    if number < (0 if key == "retries" else 1):
        raise bad("zero or more" if key == "retries" else "at least 1")
    return number


def _seconds(key: str, value: Any, bad: _Bad) -> float:
    """A finite number of seconds: positive for `timeout`, zero or more otherwise."""
    try:
        seconds = float(value) if not isinstance(value, bool) else -1.0
    except (TypeError, ValueError):
        raise bad("a number of seconds") from None
    if not seconds >= 0 or seconds == float("inf") or (key == "timeout" and seconds == 0):
        raise bad("a positive number of seconds" if key == "timeout" else "zero or more seconds")
    return seconds


#: The converter of each setting.
_CONVERTERS: dict[str, Callable[[str, Any, _Bad], Any]] = {
    "webhook_url": _webhook_url,
    "command": _command,
    "events": _events,
    "headers": _headers,
    "retries": _count,
    "queue_size": _count,
    "timeout": _seconds,
    "backoff": _seconds,
    "flush_timeout": _seconds,
}


def _shown(key: str, value: Any) -> str:
    """A bad setting's value, for the message: secrets masked, header values never shown."""
    if key == "headers":
        return "a value not shown here (it may hold a secret)"
    if key == "webhook_url" and isinstance(value, str):
        return repr(redact_url(value.strip()))
    if key == "command" and isinstance(value, list | tuple):
        return repr(redact_command([str(arg) for arg in value]))
    if key == "command" and isinstance(value, str):
        return repr(redact_command(redact(value).split()))
    if key in ("webhook_url", "command") and not isinstance(value, str):
        return f"a {type(value).__name__}"
    return repr(redact(str(value) if isinstance(value, str) else repr(value)))


def _build(values: dict[str, Any]) -> NotifyConfig:
    return NotifyConfig(**values)


__all__ = ["DEFAULT_EVENTS", "ENV_PREFIX", "EVENTS", "NotifyConfig", "load_config"]
