"""The public `Job` builder, function references and the function policy (RELIABILITY.md D9)."""

from __future__ import annotations

import fnmatch
import importlib
import inspect
import math
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from gigq_core.errors import DisallowedFunctionError, InvalidJobError
from gigq_core.records import utc

#: Modules a worker never imports, whatever the allow-list says, beyond the whole stdlib.
_ALWAYS_REFUSED = frozenset({"builtins", "__builtin__", "gigq", "gigq_core", "gigq_sqlite"})


def function_path(function: Any) -> str:
    """The stored form "package.module:qualname" of a callable or an import path string.

    Refuses lambdas, closures, nested functions and methods with a sentence saying why.
    """
    inner = getattr(function, "__wrapped_task__", None)
    if inner is not None:
        function = inner
    if isinstance(function, str):
        return _normalize_path(function)
    if not callable(function):
        raise InvalidJobError(f"function must be a callable or an import path, got {function!r}")
    qualname = getattr(function, "__qualname__", None)
    module = getattr(function, "__module__", None)
    if inspect.ismethod(function):
        raise InvalidJobError(
            f"function {qualname} is a bound method; jobs run module-level functions only "
            "(a worker cannot rebuild the object it is bound to)"
        )
    if not qualname or not module:
        raise InvalidJobError(f"function {function!r} has no importable name")
    if qualname == "<lambda>" or "<lambda>" in qualname:
        raise InvalidJobError(
            "function is a lambda; a worker imports the function by name, so use a module-level def"
        )
    if "<locals>" in qualname:
        raise InvalidJobError(
            f"function {qualname} is defined inside another function (a closure or nested "
            "function); a worker imports the function by name, so define it at module level"
        )
    if "." in qualname:
        raise InvalidJobError(
            f"function {qualname} is a method; a worker imports the function by name, so use a "
            "module-level function"
        )
    return f"{module}:{qualname}"


def _normalize_path(path: str) -> str:
    path = path.strip()
    if ":" in path:
        module, _, name = path.partition(":")
    else:
        module, _, name = path.rpartition(".")
    if not module or not name or not all(p.isidentifier() for p in module.split(".")):
        raise InvalidJobError(
            f"function path {path!r} is not of the form 'package.module:function'"
        )
    if not all(part.isidentifier() for part in name.split(".")):
        raise InvalidJobError(f"function path {path!r} does not name a function")
    return f"{module}:{name}"


def check_function_allowed(path: str, allowed_modules: Sequence[str] = ()) -> None:
    """Raise DisallowedFunctionError for a stdlib or builtins target, or one outside the
    allow-list when one is set."""
    module = path.partition(":")[0]
    top = module.split(".")[0]
    if top in _ALWAYS_REFUSED or top in sys.stdlib_module_names:
        raise DisallowedFunctionError(
            f"function '{path}' is not allowed: workers never run standard-library or "
            "builtin functions"
        )
    if allowed_modules and not any(
        fnmatch.fnmatchcase(module, pattern) for pattern in allowed_modules
    ):
        raise DisallowedFunctionError(
            f"function '{path}' is not allowed: its module is outside allowed_modules "
            f"({', '.join(allowed_modules)})"
        )


def import_function(path: str) -> Callable[..., Any]:
    """Import the function a stored path names; raises ImportError or AttributeError."""
    module_name, _, qualname = path.partition(":")
    module = importlib.import_module(module_name)
    target: Any = module
    for part in qualname.split("."):
        target = getattr(target, part)
    target = getattr(target, "__wrapped_task__", target)
    if not callable(target):
        raise TypeError(f"'{path}' is not callable")
    return target  # type: ignore[no-any-return]


#: Longest delay, timeout or retry delay accepted: 100 years, well inside datetime's range.
MAX_SECONDS = 100 * 365.25 * 24 * 3600


def _seconds(value: Any, what: str) -> float:
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidJobError(f"{what} must be a number of seconds or a timedelta, got {value!r}")
    else:
        seconds = float(value)
    if not math.isfinite(seconds) or abs(seconds) > MAX_SECONDS:
        raise InvalidJobError(
            f"{what} must be a finite number of seconds (at most 100 years), got {value!r}"
        )
    return seconds


def normalize_retry(retry: Any, retry_delay: Any) -> tuple[str | None, dict[str, Any]]:
    """(strategy name or None for the default, parameters) from the user's arguments."""
    if retry is not None and retry_delay is not None:
        raise InvalidJobError("give retry_delay or retry, not both")
    if retry_delay is not None:
        delay = _seconds(retry_delay, "retry_delay")
        if delay < 0:
            raise InvalidJobError(f"retry_delay must be zero or more, got {retry_delay!r}")
        return "fixed", {"delay": delay}
    if retry is None:
        return None, {}
    if isinstance(retry, str):
        return retry, {}
    if (
        isinstance(retry, tuple | list)
        and len(retry) == 2
        and isinstance(retry[0], str)
        and isinstance(retry[1], dict)
    ):
        return retry[0], dict(retry[1])
    if callable(getattr(retry, "delay", None)):
        return STRATEGY_OBJECT, {"object": retry}  # named by the queue, which knows them
    raise InvalidJobError(
        f"retry must be a strategy name, (name, {{parameters}}) or a strategy object, got {retry!r}"
    )


#: Placeholder name of a strategy given as an object, until the queue names it.
STRATEGY_OBJECT = "<object>"


class Job:
    """A job to submit: a plain, mutable builder as in the original GigQ.

    The queue turns it into a frozen `JobRecord` at submit.
    """

    def __init__(
        self,
        name: str,
        function: Any,
        params: dict[str, Any] | None = None,
        priority: int = 0,
        dependencies: Sequence[Any] | None = None,
        max_attempts: int = 3,
        timeout: float | int | timedelta | None = 300,
        description: str = "",
        pass_parent_results: bool | None = None,
        retry_delay: float | int | timedelta | None = None,
        *,
        queue: str = "default",
        delay: float | int | timedelta | None = None,
        run_at: datetime | None = None,
        retry: Any = None,
        unique_key: str | None = None,
        unique_scope: str = "active",
        id: str | None = None,
    ) -> None:
        if not isinstance(name, str) or not name.strip():
            raise InvalidJobError(f"name must be a non-empty string, got {name!r}")
        self.id = id or new_job_id()
        self.name = name
        self.function = function
        self.function_path = function_path(function)
        if params is not None and not isinstance(params, dict):
            raise InvalidJobError(f"params must be a dict, got {type(params).__name__}")
        self.params = dict(params or {})
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise InvalidJobError(f"priority must be an integer, got {priority!r}")
        if not -(2**63) <= priority < 2**63:
            raise InvalidJobError(f"priority must fit in 64 bits, got {priority!r}")
        self.priority = priority
        if isinstance(dependencies, str | Job):
            dependencies = [dependencies]  # one dependency, not the letters of an id
        self.dependencies = [_dependency_id(dep) for dep in (dependencies or [])]
        if (
            isinstance(max_attempts, bool)
            or not isinstance(max_attempts, int)
            or not 1 <= max_attempts < 2**63
        ):
            raise InvalidJobError(
                f"max_attempts must be an integer from 1 to 2**63 - 1, got {max_attempts!r}"
            )
        self.max_attempts = max_attempts
        if timeout is not None:
            timeout = _seconds(timeout, "timeout")
            if timeout <= 0:
                raise InvalidJobError(
                    f"timeout must be positive (or None for no limit), got {timeout!r}"
                )
        self.timeout = timeout
        self.description = description or ""
        self.pass_parent_results = pass_parent_results
        self.retry_delay = retry_delay
        self.retry = retry
        normalize_retry(retry, retry_delay)  # validate now; names are checked at submit
        if not isinstance(queue, str) or not queue.strip():
            raise InvalidJobError(f"queue must be a non-empty string, got {queue!r}")
        self.queue = queue
        if delay is not None and run_at is not None:
            raise InvalidJobError("give delay or run_at, not both")
        if delay is not None and _seconds(delay, "delay") < 0:
            raise InvalidJobError(f"delay must be zero or more, got {delay!r}")
        if run_at is not None and not isinstance(run_at, datetime):
            raise InvalidJobError(f"run_at must be a datetime, got {run_at!r}")
        self.delay = delay
        self.run_at = run_at
        if unique_key is not None and (not isinstance(unique_key, str) or not unique_key):
            raise InvalidJobError(f"unique_key must be a non-empty string, got {unique_key!r}")
        if unique_scope not in ("active", "success"):
            raise InvalidJobError(
                f"unique_scope must be 'active' or 'success', got {unique_scope!r}"
            )
        self.unique_key = unique_key
        self.unique_scope = unique_scope
        self.workflow_id: str | None = None
        self.workflow_name: str | None = None

    def due_at(self, now: datetime) -> datetime:
        """When the job may first run, given the submit time `now` (aware UTC)."""
        if self.run_at is not None:
            return utc(self.run_at)
        if self.delay is not None:
            return now + timedelta(seconds=_seconds(self.delay, "delay"))
        return now.astimezone(UTC)

    def __repr__(self) -> str:
        return f"<Job {self.name!r} {self.function_path} id={self.id}>"


def new_job_id() -> str:
    """A new job id: a random UUID (version 4), text form.

    Random, not time-ordered (UUID7): users name jobs by id prefix (`gigq show 3f2a`), and
    ids of jobs submitted within the same minute would share their first eight characters.
    Built from os.urandom directly, about twice as fast as str(uuid.uuid4()).
    """
    value = int.from_bytes(os.urandom(16)) & _UUID4_CLEAR | _UUID4_SET
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


#: The version (4) and variant (0b10) bits of a UUID4, as masks over its 128-bit integer.
_UUID4_CLEAR = ~(0xF << 76 | 0x3 << 62) & (1 << 128) - 1
_UUID4_SET = 0x4 << 76 | 0x2 << 62


def _dependency_id(dep: Any) -> str:
    if isinstance(dep, Job):
        return dep.id
    if isinstance(dep, str) and dep:
        return dep
    raise InvalidJobError(f"a dependency must be a Job or a job id, got {dep!r}")


__all__ = [
    "Job",
    "check_function_allowed",
    "function_path",
    "import_function",
    "new_job_id",
    "normalize_retry",
]
