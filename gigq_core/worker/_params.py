"""The keyword arguments a job is called with: its params, and its parents' results."""

from __future__ import annotations

from typing import Any

from gigq_core.execution import (
    PermanentError,
    load_function,
    may_want_parent_results,
    wants_parent_results,
)
from gigq_core.ports import Serializer, Storage
from gigq_core.records import JobRecord
from gigq_core.settings import Settings


def prepare_params(
    record: JobRecord, serializer: Serializer, storage: Storage, settings: Settings
) -> dict[str, Any]:
    """The keyword arguments of the call: params, plus parent_results when wanted."""
    params: dict[str, Any] = serializer.loads(record.params)
    if may_want_parent_results(record):
        wanted: bool | None = record.pass_parent_results
        if wanted is None:
            try:
                function = load_function(record, settings.allowed_modules)
            except PermanentError:
                return params  # the attempt itself will fail with the reason
            wanted = wants_parent_results(function, record)
        if wanted:
            params["parent_results"] = _parent_results(record, serializer, storage, settings)
    return params


def _parent_results(
    record: JobRecord, serializer: Serializer, storage: Storage, settings: Settings
) -> dict[str, Any]:
    """The decoded results of the job's dependencies, by id; PermanentError, with none
    of them loaded, when together they are larger than `max_parent_results`."""
    cap = settings.max_parent_results
    total, found = storage.results(record.dependencies, cap)
    if total > cap:
        raise PermanentError(
            f"the results of the {len(record.dependencies):,} dependencies of job "
            f"{record.id} are {total:,} bytes together, over the limit of {cap:,} "
            "(setting max_parent_results): have the parents return references, such as "
            "paths, instead"
        )
    return {
        dep: None if (data := found.get(dep)) is None else serializer.loads(data)
        for dep in record.dependencies
    }
