"""Everything a GigQ plugin needs, in one module: `from gigq.plugin import hookimpl, JobRecord`.

A plugin imports GigQ only from here (and `hookimpl` from `gigq`, as before); the modules
behind these names may move, these names stay. Lifecycle hooks receive the core's frozen
records (`JobRecord`, `ErrorInfo`) and the worker's core `JobQueue`. Names load on first use,
so a plugin imported by every `gigq` command costs nothing until it calls into GigQ.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gigq_core.context import JobContext, current_job
    from gigq_core.errors import (
        AmbiguousIdError,
        BusyError,
        ConfigError,
        DependencyError,
        DisallowedFunctionError,
        GigQError,
        InvalidJobError,
        JobNotFoundError,
        PluginError,
        SerializationError,
        StorageError,
        StorageUnavailableError,
        UserError,
    )
    from gigq_core.hookspecs import CommandGroup, hookimpl
    from gigq_core.jobs import Job, check_function_allowed, function_path, resolve_function
    from gigq_core.logs import printable
    from gigq_core.plugins import GigQPluginManager, make_plugin_manager
    from gigq_core.ports import Storage
    from gigq_core.queue import JobQueue
    from gigq_core.records import ErrorInfo, Execution, JobRecord, JobStatus, WorkerInfo
    from gigq_core.settings import Option, Settings, find_config
    from gigq_core.testing import FakeClock, RecordingPlugin
    from gigq_core.worker import Worker

#: Public name -> the module that defines it.
_LAZY = {
    # the hook marker, and what gigq_register_commands receives
    "hookimpl": "gigq_core.hookspecs",
    "CommandGroup": "gigq_core.hookspecs",
    # what hooks receive
    "ErrorInfo": "gigq_core.records",
    "Execution": "gigq_core.records",
    "JobRecord": "gigq_core.records",
    "JobStatus": "gigq_core.records",
    "WorkerInfo": "gigq_core.records",
    "JobQueue": "gigq_core.queue",
    "Storage": "gigq_core.ports",
    # submitting jobs as the user would, and the function policy they pass
    "Job": "gigq_core.jobs",
    "check_function_allowed": "gigq_core.jobs",
    "function_path": "gigq_core.jobs",
    "resolve_function": "gigq_core.jobs",
    "JobContext": "gigq_core.context",
    "current_job": "gigq_core.context",
    # errors: raise a GigQError to tell the user (one sentence, its exit code)
    "AmbiguousIdError": "gigq_core.errors",
    "BusyError": "gigq_core.errors",
    "ConfigError": "gigq_core.errors",
    "DependencyError": "gigq_core.errors",
    "DisallowedFunctionError": "gigq_core.errors",
    "GigQError": "gigq_core.errors",
    "InvalidJobError": "gigq_core.errors",
    "JobNotFoundError": "gigq_core.errors",
    "PluginError": "gigq_core.errors",
    "SerializationError": "gigq_core.errors",
    "StorageError": "gigq_core.errors",
    "StorageUnavailableError": "gigq_core.errors",
    "UserError": "gigq_core.errors",
    # settings (a plugin declares its own as Options, through gigq_settings) and output
    "Option": "gigq_core.settings",
    "Settings": "gigq_core.settings",
    "find_config": "gigq_core.settings",
    "printable": "gigq_core.logs",
    # testing a plugin in-process
    "FakeClock": "gigq_core.testing",
    "GigQPluginManager": "gigq_core.plugins",
    "RecordingPlugin": "gigq_core.testing",
    "Worker": "gigq_core.worker",
    "make_plugin_manager": "gigq_core.plugins",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'gigq.plugin' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "AmbiguousIdError",
    "BusyError",
    "CommandGroup",
    "ConfigError",
    "DependencyError",
    "DisallowedFunctionError",
    "ErrorInfo",
    "Execution",
    "FakeClock",
    "GigQError",
    "GigQPluginManager",
    "InvalidJobError",
    "Job",
    "JobContext",
    "JobNotFoundError",
    "JobQueue",
    "JobRecord",
    "JobStatus",
    "Option",
    "PluginError",
    "RecordingPlugin",
    "SerializationError",
    "Settings",
    "Storage",
    "StorageError",
    "StorageUnavailableError",
    "UserError",
    "Worker",
    "WorkerInfo",
    "check_function_allowed",
    "current_job",
    "find_config",
    "function_path",
    "hookimpl",
    "make_plugin_manager",
    "printable",
    "resolve_function",
]
