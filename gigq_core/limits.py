"""Limits on what a queue stores: the length of names and texts, the number of dependencies,
the nesting of params and the size of the parent results handed to a job.

Names, descriptions and dependency lists over their limit are refused at submit; error
messages and tracebacks are cut (head and tail kept, a marker between), as an error is
recorded whatever its size. Each limit is a setting (a field of gigq_core.settings.Settings).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

from gigq_core.errors import ConfigError, InvalidJobError, SerializationError
from gigq_core.records import ErrorInfo

if TYPE_CHECKING:
    from gigq_core.jobs import Job
    from gigq_core.settings import Settings

#: Longest job name, queue name, workflow name, job id, unique key or worker id, in
#: characters: enough for any name a person or a program picks, small enough to print.
DEFAULT_MAX_NAME_LENGTH = 1_000
#: Longest job description, in characters.
DEFAULT_MAX_DESCRIPTION_LENGTH = 10_000
#: Longest error message, and longest traceback, kept of a failed attempt, in characters.
DEFAULT_MAX_ERROR_LENGTH = 64 * 1024
#: Most dependencies one job may have.
DEFAULT_MAX_DEPENDENCIES = 10_000
#: Most bytes of serialized results one job may get as `parent_results`: the largest
#: `max_payload` allows, so one parent with the largest result still fits; a fan-in that
#: needs more should pass references (paths) instead.
DEFAULT_MAX_PARENT_RESULTS = 16 * 1024 * 1024
#: Deepest nesting of a job's params as a JSON document (the params object is level 1):
#: Ruby's JSON parser refuses more than 100 and serde_json more than 128 by default, so
#: stored params stay readable outside Python.
DEFAULT_MAX_NESTING_DEPTH = 100
#: The nesting setting may be raised up to this: the JSON serializer's own limit, far
#: below Python's recursion limit.
MAX_NESTING_DEPTH_LIMIT = 500

#: The settings this module reads, with their defaults.
DEFAULTS: dict[str, int] = {
    "max_name_length": DEFAULT_MAX_NAME_LENGTH,
    "max_description_length": DEFAULT_MAX_DESCRIPTION_LENGTH,
    "max_error_length": DEFAULT_MAX_ERROR_LENGTH,
    "max_dependencies": DEFAULT_MAX_DEPENDENCIES,
    "max_parent_results": DEFAULT_MAX_PARENT_RESULTS,
    "max_nesting_depth": DEFAULT_MAX_NESTING_DEPTH,
}


def check_settings(settings: Settings) -> None:
    """Refuse a limit that is not a positive whole number (ConfigError naming it)."""
    for key in DEFAULTS:
        value = getattr(settings, key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(
                f"setting '{key}' must be a whole number of at least 1, got {value!r}"
            )
    depth = settings.max_nesting_depth
    if depth > MAX_NESTING_DEPTH_LIMIT:
        raise ConfigError(
            f"setting 'max_nesting_depth' must be at most {MAX_NESTING_DEPTH_LIMIT}, got {depth!r}"
        )


def shown(text: str, width: int = 80) -> str:
    """`text` cut to `width` characters for a message (an ellipsis marks the cut)."""
    return text if len(text) <= width else text[: width - 1] + "…"


def check_text(value: str | None, what: str) -> None:
    """Raise InvalidJobError when `value` cannot be written as UTF-8: a lone surrogate, which
    is what Python makes of bytes in a command line that are not UTF-8. No store can hold
    it (SQLite and PostgreSQL would raise a bare UnicodeEncodeError deep in a write)."""
    if not isinstance(value, str):
        return  # not text at all: the caller's own checks say so
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as err:
        raise InvalidJobError(
            f"{what} is not valid text: {value[err.start]!r} at position {err.start} is not "
            "a character (bytes that are not UTF-8 read as text give such)"
        ) from None


def check_length(value: str | None, limit: int, what: str, setting: str) -> None:
    """Raise InvalidJobError when `value` is longer than `limit` characters, or is not text
    UTF-8 can hold (`check_text`)."""
    check_text(value, what)
    if value is not None and len(value) > limit:
        raise InvalidJobError(
            f"{what} is {len(value):,} characters long, over the limit of {limit:,} "
            f"(setting {setting})"
        )


def check_job(job: Job, settings: Settings) -> None:
    """Refuse a job whose names, description or dependency list are over their limits.

    Runs before anything else looks at the job, so no message echoes an oversized value.
    """
    names = settings.max_name_length
    check_length(job.name, names, "the job name", "max_name_length")
    label = f"job '{shown(job.name)}'"
    check_length(job.id, names, f"the id of {label}", "max_name_length")
    check_length(job.queue, names, f"the queue name of {label}", "max_name_length")
    check_length(job.workflow_name, names, f"the workflow name of {label}", "max_name_length")
    check_length(job.workflow_id, names, f"the workflow id of {label}", "max_name_length")
    check_length(job.unique_key, names, f"the unique key of {label}", "max_name_length")
    check_length(
        job.description,
        settings.max_description_length,
        f"the description of {label}",
        "max_description_length",
    )
    count, most = len(job.dependencies), settings.max_dependencies
    if count > most:
        raise InvalidJobError(
            f"{label} has {count:,} dependencies, over the limit of {most:,} "
            "(setting max_dependencies)"
        )
    for dependency in job.dependencies:
        check_length(dependency, names, f"a dependency id of {label}", "max_name_length")


def check_depth(value: Any, limit: int, what: str) -> None:
    """Raise SerializationError when `value`, as a JSON document, nests deeper than `limit`
    levels (the outermost dict or list is level 1).

    Iterative, so any depth is measured without recursion; a container met again deeper
    (shared, or holding itself) is walked again, at most once per level.
    """
    deepest: dict[int, int] = {}
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            raise SerializationError(
                f"{what} are nested too deeply (more than {limit} levels; "
                "setting max_nesting_depth)"
            )
        if deepest.get(id(item), 0) >= depth:
            continue
        deepest[id(item)] = depth
        children = item.values() if isinstance(item, dict) else item
        stack.extend(
            (child, depth + 1) for child in children if isinstance(child, dict | list | tuple)
        )


def clip(text: str, limit: int) -> str:
    """`text`, or if it is longer than `limit` characters, its head and tail around a
    marker saying how many characters were cut; the result is at most `limit` long."""
    if len(text) <= limit:
        return text
    keep = limit - len(_marker(len(text)))
    if keep <= 0:
        return text[:limit]
    head, tail = (keep + 1) // 2, keep // 2
    return text[:head] + _marker(len(text) - head - tail) + text[len(text) - tail :]


def _marker(cut: int) -> str:
    return f"\n… [truncated {cut:,} characters] …\n"


def clip_error(error: ErrorInfo, limit: int) -> ErrorInfo:
    """`error` with its type, message and traceback each cut to `limit` characters."""
    if max(len(error.type), len(error.message), len(error.traceback)) <= limit:
        return error
    return attrs.evolve(
        error,
        type=clip(error.type, limit),
        message=clip(error.message, limit),
        traceback=clip(error.traceback, limit),
    )


__all__ = [
    "DEFAULTS",
    "MAX_NESTING_DEPTH_LIMIT",
    "check_depth",
    "check_job",
    "check_length",
    "check_settings",
    "check_text",
    "clip",
    "clip_error",
    "shown",
]
