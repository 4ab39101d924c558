"""GigQ's domain core: jobs, the queue and worker services, ports, hooks and plugins.

Imports only the standard library, attrs and pluggy; storage adapters are found through the
`gigq_storage` hook.
"""

from __future__ import annotations

from typing import Any

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
)
from gigq_core.hookspecs import hookimpl
from gigq_core.jobs import Job
from gigq_core.logs import setup_logging
from gigq_core.plugins import get_plugin_manager, make_plugin_manager, open_storage
from gigq_core.queue import JobQueue, close_connections
from gigq_core.records import (
    ErrorInfo,
    Execution,
    JobRecord,
    JobStatus,
    WorkerInfo,
)
from gigq_core.task import TaskWrapper, task
from gigq_core.worker import Worker
from gigq_core.workflow import Workflow


def __getattr__(name: str) -> Any:
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
    "Workflow",
    "close_connections",
    "current_job",
    "get_plugin_manager",
    "hookimpl",
    "make_plugin_manager",
    "open_storage",
    "setup_logging",
    "task",
]
