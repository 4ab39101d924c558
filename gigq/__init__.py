"""GigQ: a job queue for one machine, with no server.

This facade keeps the original GigQ's imports working:
`from gigq import Job, JobQueue, Worker, Workflow, task`. Names load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import gigq_core

if TYPE_CHECKING:
    from gigq_core import *  # noqa: F403 -- the facade re-exports the core's public API


def __getattr__(name: str) -> Any:
    if name in gigq_core.__all__ or name == "__version__":
        value = getattr(gigq_core, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'gigq' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(gigq_core.__all__))


__all__ = list(gigq_core.__all__)
