"""The public `Job` builder, function references and the function policy (docs/guarantees.md D9)."""

from __future__ import annotations

import fnmatch
import importlib
import inspect
import math
import os
import re
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from gigq_core.errors import DisallowedFunctionError, InvalidJobError
from gigq_core.limits import check_text, shown
from gigq_core.records import utc

#: Top-level packages whose functions a worker never runs, whatever `allowed_modules` says,
#: beyond the whole standard library (`sys.stdlib_module_names`): GigQ's own packages (a job
#: must not drive the worker or the CLI), packaging tools (their helpers spawn processes and
#: install code), and well-known ways to run a process, a shell or arbitrary code. The list
#: cannot be complete; `allowed_modules` is the defence (see the README's Security section).
REFUSED_PACKAGES = frozenset(
    {
        # Python itself, under other names.
        "__builtin__",
        "_distutils_hack",
        "distutils",
        "pkg_resources",
        # Installers and build tools.
        "build",
        "conda",
        "ensurepip",
        "flit",
        "flit_core",
        "hatch",
        "hatchling",
        "installer",
        "pdm",
        "pip",
        "pipx",
        "poetry",
        "setuptools",
        "uv",
        "virtualenv",
        "wheel",
        # Test and task runners that import and run other code.
        "_pytest",
        "coverage",
        "fabric",
        "invoke",
        "nox",
        "pytest",
        "tox",
        # Process, shell and remote-execution libraries.
        "delegator",
        "execnet",
        "paramiko",
        "pexpect",
        "plumbum",
        "psutil",
        "ptyprocess",
        "sarge",
        "sh",
        # GigQ's own dependencies (click.termui:edit runs an editor command, for one).
        "attrs",
        "click",
        "croniter",
        "pluggy",
        "psycopg",
        "psycopg_pool",
        "tabulate",
        # Interpreters, kernels, template engines and deserializers that run code.
        "IPython",
        "cloudpickle",
        "dill",
        "ipykernel",
        "jinja2",
        "joblib",
        "jupyter_client",
        "mako",
        "yaml",
    }
)

#: GigQ's own packages: `gigq`, and every `gigq_*` package (the core, the adapters, the CLI
#: and the first-party plugins).
_GIGQ_PACKAGE = re.compile(r"gigq(_\w*)?\Z")


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
    _check_function_name(f"{module}:{qualname}", qualname)
    return f"{module}:{qualname}"


def _normalize_path(path: str) -> str:
    """ "module:function", from that form or the original GigQ's "module.function"."""
    path = path.strip()
    if ":" in path:
        module, _, name = path.partition(":")
    else:
        module, _, name = path.rpartition(".")
    if not module or not name or not all(p.isidentifier() for p in module.split(".")):
        raise InvalidJobError(
            f"function path {path!r} is not of the form 'package.module:function'"
        )
    _check_function_name(path, name)
    return f"{module}:{name}"


def _check_function_name(path: str, name: str) -> None:
    """A job's function is one public, module-level name: no dots (attribute paths could
    reach anything the module imports) and no leading underscore."""
    if not name.isidentifier() or "." in name:
        raise InvalidJobError(
            f"function path {path!r} does not name a module-level function "
            "('package.module:function', with no dots after the colon)"
        )
    if name.startswith("_"):
        raise InvalidJobError(
            f"function path {path!r} names a private function: jobs run public "
            "module-level functions only (rename it without the leading underscore)"
        )


def check_function_allowed(path: str, allowed_modules: Sequence[str] = ()) -> None:
    """Raise DisallowedFunctionError for a function the policy refuses.

    Refused always: a path that is not "module:function" with one public name, and any
    module of the standard library, of GigQ itself or of `REFUSED_PACKAGES`. When
    `allowed_modules` is set, the module must also match one of its patterns
    (`fnmatch.fnmatchcase`: "*" matches any characters, dots included, so "myapp.*" matches
    every submodule of myapp but not "myapp" itself). `__main__` obeys the allow-list too.
    """
    module, sep, name = path.partition(":")
    try:
        if not sep:
            raise InvalidJobError(f"function path {path!r} is not 'module:function'")
        _check_function_name(path, name)
    except InvalidJobError as err:
        raise DisallowedFunctionError(f"function '{path}' is not allowed: {err}") from None
    top = module.split(".")[0]
    if top in sys.stdlib_module_names or top == "builtins":
        raise DisallowedFunctionError(
            f"function '{path}' is not allowed: workers never run standard-library or "
            "builtin functions"
        )
    if top in REFUSED_PACKAGES or _GIGQ_PACKAGE.match(top):
        raise DisallowedFunctionError(
            f"function '{path}' is not allowed: workers never run functions of {top} "
            "(GigQ itself, packaging tools, and libraries that run processes or code)"
        )
    if allowed_modules and not any(
        fnmatch.fnmatchcase(module, pattern) for pattern in allowed_modules
    ):
        raise DisallowedFunctionError(
            f"function '{path}' is not allowed: its module is outside allowed_modules "
            f"({', '.join(allowed_modules)})"
        )


def resolve_function(
    path: str, allowed_modules: Sequence[str] = (), main_allowed: bool = True
) -> Callable[..., Any]:
    """The function a stored "module:function" path names, resolved and then checked.

    The policy is applied to the name, the module is imported (`__main__` is the running
    program's), and the target must be a Python function defined in that very module: not
    a name the module imported from elsewhere (`from os import system`), not a class, a
    builtin or another callable object. `main_allowed=False` refuses `__main__` targets (the
    `gigq` console script, whose `__main__` is GigQ's own CLI). Raises
    DisallowedFunctionError for what the policy refuses, ImportError or AttributeError
    when the target does not exist.
    """
    check_function_allowed(path, allowed_modules)
    module_name, _, name = path.partition(":")
    if module_name == "__main__":
        if not main_allowed:
            raise DisallowedFunctionError(
                f"function '{path}' is not allowed: this program's __main__ is the gigq "
                "command, not a job module"
            )
        module = sys.modules.get("__main__")
        if module is None:
            raise ImportError("no __main__ module")
    else:
        module = importlib.import_module(module_name)
    target = getattr(module, name)
    target = getattr(target, "__wrapped_task__", target)
    if not inspect.isfunction(target):
        raise DisallowedFunctionError(
            f"function '{path}' is not allowed: it is a {type(target).__name__}, not a "
            "function defined with def"
        )
    defined_in = getattr(target, "__module__", None)
    if defined_in != module_name:
        raise DisallowedFunctionError(
            f"function '{path}' is not allowed: it is defined in {defined_in}, not in "
            f"{module_name} (submit it as '{defined_in}:{target.__name__}' if that module is "
            "allowed)"
        )
    return target


def import_function(path: str) -> Callable[..., Any]:
    """Import the function a stored path names, under the default policy (no allow-list);
    raises DisallowedFunctionError, ImportError or AttributeError."""
    return resolve_function(path)


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
        check_text(name, "the job name")
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
        check_text(self.description, f"the description of job '{shown(name)}'")
        self.pass_parent_results = pass_parent_results
        self.retry_delay = retry_delay
        self.retry = retry
        normalize_retry(retry, retry_delay)  # validate now; names are checked at submit
        if not isinstance(queue, str) or not queue.strip():
            raise InvalidJobError(f"queue must be a non-empty string, got {queue!r}")
        check_text(queue, f"the queue name of job '{shown(name)}'")
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
        check_text(unique_key, f"the unique key of job '{shown(name)}'")
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
    "resolve_function",
]
