"""Running one attempt of a job, and deciding what its end means (retry or not)."""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import attrs

from gigq_core.context import JobContext, reset_current_job, set_current_job
from gigq_core.errors import Abort, DisallowedFunctionError, GigQError, InvalidJobError
from gigq_core.jobs import MAX_SECONDS, resolve_function
from gigq_core.ports import Serializer
from gigq_core.records import FREE_HANDBACKS, ErrorInfo, JobRecord, Outcome
from gigq_core.retry import build_strategy
from gigq_core.serializers import check_size


class PermanentError(Exception):
    """An attempt failed in a way no retry can mend (bad function, unserializable result)."""


class ModuleUnavailableError(PermanentError):
    """The job's own module (or a package it is in) is not on this worker's import path:
    a problem of the worker (started in the wrong folder, without `--path`), not of the
    job, which another worker may well run. Other import failures (the module imports
    but raises, or has no such function) stay plain PermanentErrors."""

    def __init__(self, message: str, module: str) -> None:
        super().__init__(message)
        #: The module that could not be found, as Python named it (e.g. "tasks").
        self.module = module


@attrs.frozen(kw_only=True)
class AttemptResult:
    """What running an attempt produced, before it is reported to storage."""

    #: "completed", "failed", "timeout" or "cancelled".
    status: str
    #: The return value, for "completed".
    value: Any = None
    #: The serialized return value, for "completed".
    result: str | None = None
    error: ErrorInfo | None = None
    #: True when the error must not be retried (Abort, bad function, bad result).
    permanent: bool = False
    #: Seconds the attempt ran.
    duration: float = 0.0
    #: The job's module (or its package) that this worker cannot find: the job never
    #: ran, and is handed back rather than failed (see `decide`).
    unimportable: str | None = None

    @classmethod
    def cannot_import(cls, err: ModuleUnavailableError) -> AttemptResult:
        """The attempt of a job whose module this worker cannot find."""
        return cls(
            status="failed",
            error=ErrorInfo(type="ModuleUnavailableError", message=str(err)),
            permanent=True,
            unimportable=err.module,
        )


#: Whether `__main__` targets may run in this process. The `gigq` console script turns it
#: off: its `__main__` is GigQ's own CLI, never a module of jobs.
main_targets_allowed = True


def load_function(record: JobRecord | str, allowed_modules: Sequence[str]) -> Callable[..., Any]:
    """Resolve the job's function (a record, or its "module:function" path) and apply the
    function policy to what was resolved; raises PermanentError (ModuleUnavailableError
    when the job's module is not on this worker's import path)."""
    path = record if isinstance(record, str) else record.function
    try:
        return resolve_function(path, allowed_modules, main_allowed=main_targets_allowed)
    except DisallowedFunctionError as err:
        raise PermanentError(str(err)) from None
    except ModuleNotFoundError as err:
        module = path.partition(":")[0]
        missing = err.name or ""
        # Only the job's own module or a package above it: a module that exists here but
        # imports something missing is broken code, which no other worker can mend either.
        if missing and (module == missing or module.startswith(missing + ".")):
            raise ModuleUnavailableError(
                f"cannot import module '{missing}' of function '{path}' in this worker: "
                f"no module named '{missing}' on its import path",
                missing,
            ) from None
        raise PermanentError(f"cannot import function '{path}': {err!r}") from None
    except Exception as err:  # any import failure is the job's problem, not the worker's
        if path.partition(":")[0] == "__main__":
            raise PermanentError(
                f"function '{path}' is defined in a script (__main__) that this worker is "
                "not running: move it to an importable module"
            ) from None
        raise PermanentError(f"cannot import function '{path}': {err!r}") from None


def may_want_parent_results(record: JobRecord) -> bool:
    """Whether `parent_results` may be passed at all (the function decides the rest)."""
    return bool(record.dependencies) and record.pass_parent_results is not False


@functools.lru_cache(maxsize=256)
def _cached_signature(function: Callable[..., Any]) -> inspect.Signature | None:
    try:
        return inspect.signature(function)
    except (TypeError, ValueError):
        return None


def _signature(function: Callable[..., Any]) -> inspect.Signature | None:
    """The function's signature, None when it cannot be read; read once per function (a
    `submit_many` of a million jobs of one function asks a million times)."""
    try:
        return _cached_signature(function)
    except TypeError:  # an unhashable callable object
        try:
            return inspect.signature(function)
        except (TypeError, ValueError):
            return None


def check_params_fit(
    function: Callable[..., Any], params: dict[str, Any], record: JobRecord
) -> None:
    """Refuse (InvalidJobError) params the function cannot be called with, as a worker
    would call it (the params as keywords, plus `parent_results` where the function takes
    it and will get it), so a typo fails at submit instead of burning every attempt on a
    TypeError. A function whose signature cannot be read is not checked, nor is
    `pass_parent_results=True` to a function without that parameter (the original GigQ
    stores such a job; its attempts say why they fail)."""
    signature = _signature(function)
    if signature is None:
        return
    call = dict(params)
    if "parent_results" in signature.parameters and wants_parent_results(function, record):
        call.setdefault("parent_results", {})
    try:
        signature.bind(**call)
    except TypeError as err:
        shown = signature.replace(  # names and defaults only: annotations may be any text
            parameters=[
                p.replace(annotation=inspect.Parameter.empty) for p in signature.parameters.values()
            ],
            return_annotation=inspect.Signature.empty,
        )
        raise InvalidJobError(
            f"the params of job '{record.name}' do not fit {record.function}{shown}: {err}"
        ) from None


def wants_parent_results(function: Callable[..., Any], record: JobRecord) -> bool:
    """The original GigQ's rule: a job with dependencies gets `parent_results` when its
    function takes that parameter or **kwargs, or when `pass_parent_results` is True."""
    if not may_want_parent_results(record):
        return False
    if record.pass_parent_results:
        return True
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(
        p.name == "parent_results" or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters
    )


def run_attempt(
    function: Callable[..., Any],
    params: dict[str, Any],
    context: JobContext,
    serializer: Serializer,
    max_payload: int,
) -> AttemptResult:
    """Call the function in this thread and describe how it ended. Never raises for job
    errors; KeyboardInterrupt propagates."""
    started = time.monotonic()
    token = set_current_job(context)
    try:
        value = function(**params)
        if inspect.isawaitable(value):
            value = asyncio.run(_await(value))
    except KeyboardInterrupt:
        raise
    # The boundary around user code: a job's sys.exit() or any error must not kill the worker.
    except BaseException as exc:
        duration = time.monotonic() - started
        return AttemptResult(
            status="failed",
            error=ErrorInfo.from_exception(exc),
            permanent=isinstance(exc, Abort | GigQError | PermanentError),
            duration=duration,
        )
    finally:
        reset_current_job(token)
    duration = time.monotonic() - started
    try:
        result = serializer.dumps(value)
        check_size(result, max_payload, "the serialized result")
    except GigQError as err:
        return AttemptResult(
            status="failed",
            error=ErrorInfo(type="ResultError", message=f"result cannot be stored: {err}"),
            permanent=True,
            duration=duration,
        )
    return AttemptResult(status="completed", value=value, result=result, duration=duration)


async def _await(value: Any) -> Any:
    return await value


def decide(
    record: JobRecord,
    attempt: AttemptResult,
    now: datetime,
    strategies: dict[str, Callable[..., Any]],
) -> tuple[Outcome, float | None]:
    """The Outcome to report for an attempt of `record` (which holds the claim's token),
    and the retry delay in seconds when a retry follows."""
    assert record.token is not None
    if attempt.status in ("completed", "cancelled"):
        return (
            Outcome(
                job_id=record.id,
                token=record.token,
                status=attempt.status,
                result=attempt.result,
                error=attempt.error,
            ),
            None,
        )
    error = attempt.error or ErrorInfo(type="Timeout", message=attempt.status)
    if attempt.unimportable is not None and attempt.status == "failed":
        # This worker cannot find the job's module: hand the job back (the storage does not
        # count the attempt) for a worker that can. Only while the job's free hand-backs
        # last, so a job that no worker can import still ends, failed with this error.
        if record.handbacks < FREE_HANDBACKS:
            return (
                Outcome(job_id=record.id, token=record.token, status="handed_back", error=error),
                None,
            )
        error = attrs.evolve(
            error,
            message=f"{error.message}; the job was handed back {record.handbacks} times "
            "already, so it fails here",
        )
    delay: float | None = None
    if not attempt.permanent and record.attempts < record.max_attempts:
        try:
            strategy = build_strategy(strategies, record.retry, json.loads(record.retry_params))
            delay = strategy.delay(record.attempts, error)
        except Exception as exc:  # a broken strategy must not lose the job: retry at once
            error = attrs.evolve(error, message=f"{error.message} (retry strategy failed: {exc!r})")
            delay = 0.0
    # A strategy may answer anything; keep the retry inside the calendar (100 years at most).
    if delay is not None:
        delay = min(max(delay, 0.0), MAX_SECONDS) if delay == delay else 0.0
    retry_at = now + timedelta(seconds=delay) if delay is not None else None
    return (
        Outcome(
            job_id=record.id,
            token=record.token,
            status=attempt.status,
            error=error,
            retry_at=retry_at,
        ),
        delay,
    )


__all__ = [
    "AttemptResult",
    "ModuleUnavailableError",
    "PermanentError",
    "decide",
    "load_function",
    "run_attempt",
]
