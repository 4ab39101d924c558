"""GigQ: a job queue for one machine, with no server.

This facade keeps the original GigQ's imports and shapes working:
`from gigq import Job, JobQueue, Worker, Workflow, task`, with a `JobQueue` whose reads
return dicts (`get_status`, `list_jobs`) and `close_connections`. Every other public name of
`gigq_core` is here too. Names load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

import gigq_core

if TYPE_CHECKING:
    from gigq_core import *  # noqa: F403 -- the facade re-exports the core's public API
if TYPE_CHECKING:  # after the core's names, which these replace
    from gigq._compat import JobQueue as JobQueue
    from gigq._compat import Worker as Worker
    from gigq._compat import close_connections as close_connections

#: The facade's own names (the original's shapes), which stand in for the core's.
_OWN = {"JobQueue": "gigq._compat", "Worker": "gigq._compat", "close_connections": "gigq._compat"}


def __getattr__(name: str) -> Any:
    if name in _OWN:
        value = getattr(importlib.import_module(_OWN[name]), name)
    elif name in gigq_core.__all__ or name == "__version__":
        value = getattr(gigq_core, name)
    else:
        raise AttributeError(f"module 'gigq' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = sorted({*gigq_core.__all__, *_OWN})
