"""gigq-cron: periodic jobs. Schedules live in the queue's key-value store; every running
worker's tick submits the due runs, each under a unique key per schedule and tick, so a run
is stored once however many workers tick.

Missed ticks (no worker running through them) run once: the first tick after the gap submits
the latest missed run only.
"""

from __future__ import annotations

import importlib.metadata
from datetime import datetime
from typing import TYPE_CHECKING, Any

from gigq.plugin import hookimpl

from gigq_cron._schedules import (
    ALIASES,
    NAMESPACE,
    STATE_NAMESPACE,
    Schedule,
    ScheduleExistsError,
    ScheduleNotFoundError,
    add_schedule,
    list_schedules,
    remove_schedule,
    run_due,
    states,
    unique_key,
)

if TYPE_CHECKING:
    import click
    from gigq.plugin import JobQueue


@hookimpl
def gigq_worker_tick(now: datetime, queue: JobQueue) -> None:
    """Submit the due runs of every schedule."""
    run_due(queue, now)


@hookimpl
def gigq_register_commands(cli: click.Group) -> None:
    """Add `gigq cron add | list | remove`."""
    from gigq_cron._commands import cron

    cli.add_command(cron)


def __getattr__(name: str) -> Any:
    if name == "__version__":
        try:
            return importlib.metadata.version("gigq-cron")
        except importlib.metadata.PackageNotFoundError:
            return "unknown"
    raise AttributeError(f"module 'gigq_cron' has no attribute {name!r}")


__all__ = [
    "ALIASES",
    "NAMESPACE",
    "STATE_NAMESPACE",
    "Schedule",
    "ScheduleExistsError",
    "ScheduleNotFoundError",
    "add_schedule",
    "list_schedules",
    "remove_schedule",
    "run_due",
    "states",
    "unique_key",
]
