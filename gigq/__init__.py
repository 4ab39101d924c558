"""GigQ: a job queue for one machine, with no server.

This facade keeps the original GigQ's imports working:
`from gigq import Job, JobQueue, Worker, Workflow, task`.
"""

from __future__ import annotations

from typing import Any

from gigq_core import *  # noqa: F403 -- the facade re-exports the core's public API
from gigq_core import __all__ as _core_all


def __getattr__(name: str) -> Any:
    if name == "__version__":
        import gigq_core

        return gigq_core.__version__
    raise AttributeError(name)


__all__ = list(_core_all)
