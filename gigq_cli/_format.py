"""Output: tables, times for people (local, "3 min ago") and JSON for machines (ISO 8601)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import click

#: Placeholder for a missing value in tables.
NONE = "-"


def now() -> datetime:
    """The current time, aware UTC."""
    return datetime.now(UTC)


def parse_time(value: datetime | str | None) -> datetime | None:
    """An aware datetime from a datetime or an ISO 8601 string (as `get_status` gives)."""
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value)


def local_time(value: datetime | str | None) -> str:
    """The instant in local time, to the second: "2024-05-01 14:03:22"."""
    moment = parse_time(value)
    if moment is None:
        return NONE
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def duration(seconds: float) -> str:
    """A short human duration: "12 s", "3 min", "5 h", "2 days"."""
    seconds = abs(seconds)
    if seconds < 60:
        return f"{seconds:.0f} s" if seconds >= 1 else f"{seconds * 1000:.0f} ms"
    if seconds < 3600:
        return f"{seconds // 60:.0f} min"
    if seconds < 86400:
        return f"{seconds // 3600:.0f} h"
    days = seconds // 86400
    return f"{days:.0f} day" + ("s" if days != 1 else "")


def human_time(value: datetime | str | None, reference: datetime | None = None) -> str:
    """Relative time for tables ("3 min ago", "in 5 s"); past a week, the local date."""
    moment = parse_time(value)
    if moment is None:
        return NONE
    delta = ((reference or now()) - moment).total_seconds()
    if abs(delta) >= 7 * 86400:
        return moment.astimezone().strftime("%Y-%m-%d %H:%M")
    if -1 < delta < 1:
        return "just now"
    return f"{duration(delta)} ago" if delta > 0 else f"in {duration(delta)}"


def when(value: datetime | str | None, reference: datetime | None = None) -> str:
    """Local time and relative time: "2024-05-01 14:03:22 (3 min ago)"."""
    if value is None:
        return NONE
    return f"{local_time(value)} ({human_time(value, reference)})"


def short_error(text: str | None, width: int = 60) -> str:
    """The first line of an error, cut to `width` characters. Only "\n" ends the line, as
    in `lines`: a carriage return, form feed or tab is shown escaped, not taken as the end."""
    line = (text or "").strip().split("\n")[0]
    return line if len(line) <= width else line[: width - 1] + "…"


def clean(value: Any, *, keep_newlines: bool = False) -> str:
    """`value` as text safe to print on a terminal: control characters (escape sequences,
    line breaks) and bidi overrides written as escapes such as `\\x1b` and `\\n`."""
    from gigq_core.logs import printable

    return printable(str(value), keep_newlines=keep_newlines)


def _cell(value: Any) -> Any:
    """A table cell made safe: numbers and None (a blank) as they are, a tuple or list one
    item per line."""
    if value is None or (isinstance(value, int | float) and not isinstance(value, bool)):
        return value
    if isinstance(value, tuple | list):
        return "\n".join(clean(item) for item in value)
    return clean(value)


def table(rows: Iterable[Sequence[Any]], headers: Sequence[str]) -> str:
    """A plain-text table; cells are `clean`ed, a tuple or list cell shows one item a line."""
    from tabulate import tabulate

    safe = [[_cell(v) for v in row] for row in rows]
    return tabulate(safe, headers=list(headers), tablefmt="simple", disable_numparse=True)


def fields(pairs: Iterable[tuple[str, Any]]) -> str:
    """Aligned "Label:  value" lines; values are `clean`ed, a tuple or list value shows one
    item a line."""
    from tabulate import tabulate

    safe = [(f"{k}:", _cell(v)) for k, v in pairs]
    return tabulate(safe, tablefmt="plain", disable_numparse=True)


def echo(text: str, *, err: bool = False) -> None:
    """Print a one-line message that may hold stored text (names, ids, errors), `clean`ed."""
    click.echo(clean(text), err=err)


def lines(text: str) -> tuple[str, ...]:
    """A multi-line text (an error) as its lines, for a table or field that shows one a line;
    only "\\n" breaks it, any other control character is escaped in the line."""
    return tuple(text.split("\n"))


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, set | frozenset | tuple):
        return sorted(value) if isinstance(value, set | frozenset) else list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


#: What JSON with ensure_ascii=False leaves raw (DEL, C1 controls, separators, bidi
#: overrides): written as \u escapes, so the output parses back to the same strings.
_RAW_IN_JSON = re.compile("[\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def to_json(value: Any) -> str:
    """JSON for `--json`: indented, datetimes as ISO 8601 in UTC, non-ASCII text as it is
    but for control characters and bidi overrides, which are escaped."""
    text = json.dumps(value, indent=2, default=_default, ensure_ascii=False)
    # Outside strings JSON is ASCII, so each match is inside a string, where \uXXXX means it.
    return _RAW_IN_JSON.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def echo_json(value: Any) -> None:
    """Print `value` as JSON."""
    click.echo(to_json(value))


def plural(count: int, noun: str) -> str:
    """Count a noun: "1 job", "3 jobs"."""
    return f"{count} {noun}" + ("" if count == 1 else "s")


__all__ = [
    "clean",
    "duration",
    "echo",
    "echo_json",
    "fields",
    "human_time",
    "lines",
    "local_time",
    "now",
    "parse_time",
    "plural",
    "short_error",
    "table",
    "to_json",
    "when",
]
