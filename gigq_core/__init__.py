"""GigQ's domain core: jobs, the queue and worker services, ports, hooks and plugins.

Imports only the standard library, attrs and pluggy; storage adapters are found through the
`gigq_storage` hook. Public names load on first use, so `import gigq_core` stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gigq_core.context import JobContext, current_job
    from gigq_core.errors import (
        Abort,
        AmbiguousIdError,
        BusyError,
        ConfigError,
        CorruptDatabaseError,
        DatabaseNotFoundError,
        DependencyCycleError,
        DependencyError,
        DisallowedFunctionError,
        DiskFullError,
        GigQError,
        InvalidJobError,
        JobNotFoundError,
        NotADatabaseError,
        PermissionDeniedError,
        PluginError,
        ReadOnlyError,
        SchemaVersionError,
        SerializationError,
        StorageError,
        StorageIOError,
        StorageUnavailableError,
        UnknownDependencyError,
        UserError,
        WorkersLiveError,
    )
    from gigq_core.hookspecs import hookimpl
    from gigq_core.jobs import Job
    from gigq_core.logs import setup_logging
    from gigq_core.plugins import (
        GigQPluginManager,
        get_plugin_manager,
        make_plugin_manager,
        open_storage,
    )
    from gigq_core.queue import JobQueue
    from gigq_core.records import (
        ErrorInfo,
        Execution,
        JobRecord,
        JobStatus,
        WorkerInfo,
    )
    from gigq_core.tasks import TaskWrapper, task
    from gigq_core.worker import Worker
    from gigq_core.workflow import Workflow


#: Public name -> the module that defines it.
_LAZY = {
    "Abort": "gigq_core.errors",
    "AmbiguousIdError": "gigq_core.errors",
    "BusyError": "gigq_core.errors",
    "ConfigError": "gigq_core.errors",
    "CorruptDatabaseError": "gigq_core.errors",
    "DatabaseNotFoundError": "gigq_core.errors",
    "DependencyCycleError": "gigq_core.errors",
    "DependencyError": "gigq_core.errors",
    "DisallowedFunctionError": "gigq_core.errors",
    "DiskFullError": "gigq_core.errors",
    "ErrorInfo": "gigq_core.records",
    "Execution": "gigq_core.records",
    "GigQError": "gigq_core.errors",
    "GigQPluginManager": "gigq_core.plugins",
    "InvalidJobError": "gigq_core.errors",
    "Job": "gigq_core.jobs",
    "JobContext": "gigq_core.context",
    "JobNotFoundError": "gigq_core.errors",
    "JobQueue": "gigq_core.queue",
    "JobRecord": "gigq_core.records",
    "JobStatus": "gigq_core.records",
    "NotADatabaseError": "gigq_core.errors",
    "PermissionDeniedError": "gigq_core.errors",
    "PluginError": "gigq_core.errors",
    "ReadOnlyError": "gigq_core.errors",
    "SchemaVersionError": "gigq_core.errors",
    "SerializationError": "gigq_core.errors",
    "StorageError": "gigq_core.errors",
    "StorageIOError": "gigq_core.errors",
    "StorageUnavailableError": "gigq_core.errors",
    "TaskWrapper": "gigq_core.tasks",
    "UnknownDependencyError": "gigq_core.errors",
    "UserError": "gigq_core.errors",
    "WorkersLiveError": "gigq_core.errors",
    "Worker": "gigq_core.worker",
    "WorkerInfo": "gigq_core.records",
    "Workflow": "gigq_core.workflow",
    "current_job": "gigq_core.context",
    "get_plugin_manager": "gigq_core.plugins",
    "hookimpl": "gigq_core.hookspecs",
    "make_plugin_manager": "gigq_core.plugins",
    "open_storage": "gigq_core.plugins",
    "setup_logging": "gigq_core.logs",
    "task": "gigq_core.tasks",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is not None:
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value
        return value
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("gigq")
        except PackageNotFoundError:
            return "unknown"
    raise AttributeError(name)


__all__ = [
    "Abort",
    "AmbiguousIdError",
    "BusyError",
    "ConfigError",
    "CorruptDatabaseError",
    "DatabaseNotFoundError",
    "DependencyCycleError",
    "DependencyError",
    "DisallowedFunctionError",
    "DiskFullError",
    "ErrorInfo",
    "Execution",
    "GigQError",
    "GigQPluginManager",
    "InvalidJobError",
    "Job",
    "JobContext",
    "JobNotFoundError",
    "JobQueue",
    "JobRecord",
    "JobStatus",
    "NotADatabaseError",
    "PermissionDeniedError",
    "PluginError",
    "ReadOnlyError",
    "SchemaVersionError",
    "SerializationError",
    "StorageError",
    "StorageIOError",
    "StorageUnavailableError",
    "TaskWrapper",
    "UnknownDependencyError",
    "UserError",
    "Worker",
    "WorkerInfo",
    "WorkersLiveError",
    "Workflow",
    "current_job",
    "get_plugin_manager",
    "hookimpl",
    "make_plugin_manager",
    "open_storage",
    "setup_logging",
    "task",
]
