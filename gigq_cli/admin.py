"""Commands about the queue as a whole: queue list/pause/resume, stats, workers, plugins."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import click

from gigq_cli import _format as fmt
from gigq_cli._types import FiniteFloat
from gigq_cli.main import CliContext, pass_cli

if TYPE_CHECKING:
    from gigq_core.queue import JobQueue
    from gigq_core.records import WorkerInfo

#: Job states in the order tables show them.
STATES = ("pending", "reserved", "running", "completed", "failed", "cancelled", "timeout")


def _queue_rows(queue: JobQueue) -> list[dict[str, Any]]:
    """Every queue that has jobs or is paused, with its counts per state."""
    counts = queue.storage.queue_counts()
    paused = queue.storage.paused_queues()
    rows = []
    for name in sorted(set(counts) | paused):
        per = {state: counts.get(name, {}).get(state, 0) for state in STATES}
        rows.append(
            {"queue": name, "paused": name in paused, "counts": per, "total": sum(per.values())}
        )
    return rows


def _queue_table(rows: list[dict[str, Any]]) -> str:
    return fmt.table(
        [
            (r["queue"], "paused" if r["paused"] else "active", *r["counts"].values(), r["total"])
            for r in rows
        ],
        ("queue", "state", *STATES, "total"),
    )


@click.group()
def queue() -> None:
    """List, pause and resume named queues."""


@queue.command("list")
@pass_cli
def queue_list(obj: CliContext) -> None:
    """List queues with their job counts and whether they are paused."""
    with obj.open_queue() as jobs:
        rows = _queue_rows(jobs)
    if obj.json:
        fmt.echo_json(rows)
    elif not rows:
        click.echo("No queues yet.")
    else:
        click.echo(_queue_table(rows))


@queue.command()
@click.argument("names", nargs=-1, required=True, metavar="NAME...")
@pass_cli
def pause(obj: CliContext, names: tuple[str, ...]) -> None:
    """Pause queues: their jobs stay, and workers claim none until they are resumed."""
    with obj.open_queue() as jobs:
        for name in names:
            jobs.pause_queue(name)
    if obj.json:
        fmt.echo_json({"paused": list(names)})
    else:
        for name in names:
            fmt.echo(f"Queue '{name}' paused; `gigq queue resume {name}` lets workers claim.")


@queue.command()
@click.argument("names", nargs=-1, required=True, metavar="NAME...")
@pass_cli
def resume(obj: CliContext, names: tuple[str, ...]) -> None:
    """Resume paused queues."""
    with obj.open_queue() as jobs:
        for name in names:
            jobs.resume_queue(name)
    if obj.json:
        fmt.echo_json({"resumed": list(names)})
    else:
        for name in names:
            fmt.echo(f"Queue '{name}' resumed.")


# -- stats and workers ---------------------------------------------------------------------


def _worker_state(info: WorkerInfo, now: datetime, lease: float) -> str:
    """ "live", "stopped", or "lost" (no heartbeat for a lease, or its process on this host
    is gone; not yet found by a rescuer)."""
    if info.stopped_at is not None:
        return "stopped"
    if (now - info.last_heartbeat).total_seconds() > lease or info.process_gone():
        return "lost"
    return "live"


def _finished_since(queue: JobQueue, status: str, since: datetime) -> int:
    from gigq_core.records import JobFilter, JobStatus

    where = JobFilter(statuses=(JobStatus(status),), updated_after=since)
    return sum(queue.storage.count(where).values())


@click.command()
@pass_cli
def stats(obj: CliContext) -> None:
    """Show counts, throughput, the oldest ready job and live workers.

    Counts are per state and per queue; throughput counts the jobs finished in the last
    minute and hour.
    """
    with obj.open_queue() as jobs:
        now = jobs.clock.now()
        counts = jobs.stats()
        queues = _queue_rows(jobs)
        throughput = {
            f"{status}_last_{span}": _finished_since(jobs, status, now - delta)
            for status in ("completed", "failed")
            for span, delta in (("minute", timedelta(minutes=1)), ("hour", timedelta(hours=1)))
        }
        due = jobs.storage.next_due(now)
        oldest = due if due is not None and due <= now else None
        lease = float(jobs.settings.lease)
        live = [w for w in jobs.workers() if _worker_state(w, now, lease) == "live"]
    age = None if oldest is None else (now - oldest).total_seconds()
    # Workers claim nothing from a paused queue: its jobs are not waiting for a worker, and
    # are left out of the oldest ready job; the output says so, with how many they are.
    held = {r["queue"]: r["counts"]["pending"] for r in queues if r["paused"]}
    held = {name: count for name, count in held.items() if count}
    if obj.json:
        fmt.echo_json(
            {
                "counts": counts,
                "queues": queues,
                "throughput": throughput,
                "oldest_ready_since": oldest,
                "oldest_ready_age": age,
                "pending_in_paused_queues": sum(held.values()),
                "live_workers": len(live),
            }
        )
        return
    click.echo(fmt.table([(s, counts[s]) for s in (*STATES, "total")], ("status", "jobs")))
    if queues:
        click.echo("\n" + _queue_table(queues))
    click.echo(
        f"\nThroughput: {throughput['completed_last_minute']} completed in the last minute, "
        f"{throughput['completed_last_hour']} in the last hour "
        f"({throughput['failed_last_hour']} failed in the last hour)."
    )
    oldest_line = "none waiting" if age is None else f"waiting for {fmt.duration(age)}"
    if held:
        names = ", ".join(f"'{name}'" for name in held)
        oldest_line += (
            f" (paused queues not counted: {fmt.plural(sum(held.values()), 'pending job')} "
            f"in {names})"
        )
    fmt.echo(f"Oldest ready job: {oldest_line}.")
    click.echo(f"Live workers: {len(live)}.")


@click.command()
@click.option(
    "--since",
    type=FiniteFloat(min=0, max=100 * 365 * 24 * 60),
    default=60,
    show_default=True,
    metavar="MINUTES",
    help="Also show workers that stopped within this many minutes.",
)
@pass_cli
def workers(obj: CliContext, since: float) -> None:
    """List live and recently stopped workers, with their jobs."""
    from gigq_core.worker._imports import read_published

    with obj.open_queue() as jobs:
        now = jobs.clock.now()
        lease = float(jobs.settings.lease)
        found = jobs.workers(since=now - timedelta(minutes=since))
        # The modules each worker cannot import (published while it backs off their jobs).
        imports = read_published(jobs.storage)
    states = [_worker_state(w, now, lease) for w in found]
    if obj.json:
        fmt.echo_json(
            [
                {
                    "id": w.id,
                    "state": state,
                    "host": w.host,
                    "pid": w.pid,
                    "queues": list(w.queues),
                    "concurrency": w.concurrency,
                    "started_at": w.started_at,
                    "last_heartbeat": w.last_heartbeat,
                    "stopped_at": w.stopped_at,
                    "current_jobs": list(w.current_jobs),
                    "cannot_import": imports.get(w.id, {}),
                }
                for w, state in zip(found, states, strict=True)
            ]
        )
        return
    if not found:
        click.echo("No workers.")
        return
    rows = [
        (
            w.id,
            state,
            w.pid,
            ", ".join(w.queues) or "(all)",
            w.concurrency,
            fmt.human_time(w.started_at, now),
            fmt.human_time(w.last_heartbeat, now),
            w.current_jobs or fmt.NONE,
        )
        for w, state in zip(found, states, strict=True)
    ]
    headers = ("worker", "state", "pid", "queues", "slots", "started", "heartbeat", "jobs")
    click.echo(fmt.table(rows, headers))
    for w, state in zip(found, states, strict=True):
        if imports.get(w.id) and state != "stopped":
            fmt.echo(f"\n{w.id} {_cannot_import(imports[w.id], now)}")


def _cannot_import(modules: dict[str, datetime], now: datetime) -> str:
    """What a worker that cannot import some modules does about it, for `gigq workers`."""
    parts = [
        f"{module} (backing off until {fmt.when(until, now)})"
        if until > now
        else f"{module} (tries again with its next job)"
        for module, until in sorted(modules.items())
    ]
    return (
        f"cannot import: {', '.join(parts)}; start it in the folder of your code, or with "
        "--path DIR"
    )


@click.command(short_help="List plugins, their versions and hooks.")
@pass_cli
def plugins(obj: CliContext) -> None:
    """List loaded plugins (versions, hooks) and plugins that failed to load."""
    from gigq_core.plugins import plugin_versions

    loaded = plugin_versions(obj.pm)
    failed = dict(obj.pm.failures)
    if obj.json:
        fmt.echo_json(
            {
                "plugins": [{"name": n, "version": v, "hooks": h} for n, v, h in loaded],
                "failed": failed,
            }
        )
        return
    rows = [(n, v, ", ".join(h) or fmt.NONE) for n, v, h in loaded]
    click.echo(fmt.table(rows, ("plugin", "version", "hooks")))
    if failed:
        click.echo("\nFailed to load:")
        for name, message in sorted(failed.items()):
            fmt.echo(f"  {name}: {message}")


COMMANDS = (queue, stats, workers, plugins)

__all__ = ["COMMANDS", "plugins", "queue", "stats", "workers"]
