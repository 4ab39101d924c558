"""`gigq doctor`, `gigq backup`, `gigq upgrade` and `gigq migrate`: health checks, online
copies, schema upgrades and moves of a queue to another storage.

They reach the storage through the port's optional capabilities (`Diagnosable`, `Backup`,
`Upgradable`, `Transfer` in gigq_core.ports), so the CLI never imports an adapter.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click

from gigq_cli import _format as fmt
from gigq_cli.main import CliContext, pass_cli
from gigq_core.ports import Backup, Diagnosable, Transfer, Upgradable

if TYPE_CHECKING:
    from gigq_core.queue import JobQueue
    from gigq_core.records import WorkerInfo

#: Exit code of `gigq doctor` when a check failed.
DOCTOR_FAILED = 1

_LEVEL = {"ok": "ok", "warn": "WARN", "fail": "FAIL"}


def _cannot(queue: JobQueue, what: str) -> NoReturn:
    """One sentence (exit 78): this queue's storage lacks the optional capability for
    `what`."""
    from gigq_core.errors import ConfigError

    raise ConfigError(f"this storage ({queue}) cannot {what}")


@click.command()
@pass_cli
def doctor(obj: CliContext) -> None:
    """Check the queue's health; each finding comes with a one-line fix.

    Exit 0 when nothing failed (warnings allowed), 1 when a check failed.
    """
    with obj.open_queue() as queue:
        storage = queue.storage
        if not isinstance(storage, Diagnosable):
            _cannot(queue, "run health checks")
        checks = storage.diagnose()
        target = queue.target
    if obj.json:
        fmt.echo_json({"target": target, "checks": checks})
    else:
        fmt.echo(f"Checking {target}")
        rows = [
            (_LEVEL.get(c["level"], c["level"]), c["check"], c["detail"], c.get("fix") or "")
            for c in checks
        ]
        click.echo(fmt.table(rows, ("", "check", "finding", "fix")))
        failed = sum(c["level"] == "fail" for c in checks)
        warned = sum(c["level"] == "warn" for c in checks)
        if failed:
            click.echo(f"{fmt.plural(failed, 'check')} failed, {warned} with warnings.")
        elif warned:
            click.echo(f"Healthy, with {fmt.plural(warned, 'warning')}.")
        else:
            click.echo("Healthy.")
    if any(c["level"] == "fail" for c in checks):
        raise SystemExit(DOCTOR_FAILED)


@click.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@pass_cli
def backup(obj: CliContext, path: Path) -> None:
    """Copy the queue to a new file at PATH, consistently, while workers run."""
    with obj.open_queue() as queue:
        storage = queue.storage
        if not isinstance(storage, Backup):
            _cannot(queue, "make backups")
        storage.backup(path)
    size = path.stat().st_size
    if obj.json:
        fmt.echo_json({"backup": str(path), "bytes": size})
    else:
        fmt.echo(f"Backed up to {path} ({size:,} bytes).")


@click.command()
@pass_cli
def upgrade(obj: CliContext) -> None:
    """Apply schema changes that do not run on open; refused while workers are live.

    Additive changes apply whenever GigQ opens a database; the others need this command,
    with every worker stopped (exit 75 otherwise). Take a `gigq backup` first.
    """
    with obj.open_queue(upgrading=True) as queue:
        storage = queue.storage
        if not isinstance(storage, Upgradable):
            _cannot(queue, "upgrade its schema")
        report = storage.upgrade()
    if obj.json:
        fmt.echo_json(report)
    elif report["applied"]:
        click.echo(
            f"Upgraded the schema from version {report['from_version']} to {report['to_version']}."
        )
    else:
        click.echo(f"The schema is up to date (version {report['to_version']}).")


def _live_workers(queue: JobQueue) -> list[WorkerInfo]:
    """Workers registered on the queue that heartbeat within the lease, less those of this
    host whose process is gone (they cannot come back; their jobs are rescued)."""
    from gigq_cli.admin import _worker_state

    now = queue.clock.now()
    lease = float(queue.settings.lease)
    host = socket.gethostname()
    live = []
    for info in queue.workers():
        if _worker_state(info, now, lease) != "live":
            continue
        if info.host == host:
            try:
                os.kill(info.pid, 0)
            except ProcessLookupError:
                continue
            except PermissionError:
                pass  # alive, another user's
        live.append(info)
    return live


def _summary(counts: dict[str, int]) -> str:
    parts = [
        fmt.plural(counts["job"], "job"),
        fmt.plural(counts["execution"], "execution record"),
        f"{counts['kv']} key-value {'entry' if counts['kv'] == 1 else 'entries'}",
        fmt.plural(counts["paused"], "paused queue"),
    ]
    return f"{', '.join(parts[:-1])} and {parts[-1]}"


@click.command()
@click.option(
    "--from",
    "source",
    metavar="PATH|URL",
    default=None,
    help="The queue to copy (default: --db, $GIGQ_DB, else gigq.db).",
)
@click.option("--to", "target", metavar="PATH|URL", required=True, help="An empty queue.")
@pass_cli
def migrate(obj: CliContext, source: str | None, target: str) -> None:
    """Copy a whole queue into another storage, e.g. SQLite to PostgreSQL.

    Copies every job as it is (ids, states, attempts, results, dependencies, unique keys,
    schedules), its execution records, the key-value entries (cron schedules, plugin state)
    and the paused queues, in one transaction on the target. The source is left unchanged.

    Refused while workers are live on the source (exit 75: stop them first) and when the
    target already holds jobs (exit 1). Jobs still running under a dead worker's lease are
    copied as a rescue would leave them (pending again, the attempt counted, "worker lost").
    """
    from gigq_core.errors import UserError, WorkersLiveError
    from gigq_core.queue import JobQueue
    from gigq_core.records import JobFilter
    from gigq_core.transfer import refuse_non_empty

    with JobQueue(source or obj.target, plugin_manager=obj.pm, create=False) as origin:
        source_store = origin.storage
        if not isinstance(source_store, Transfer):
            _cannot(origin, "export its jobs")
        live = _live_workers(origin)
        if live:
            shown = ", ".join(f"{w.id} (pid {w.pid} on {w.host})" for w in live[:5])
            raise WorkersLiveError(
                f"{fmt.plural(len(live), 'worker')} are live on {origin.target}: {shown}; "
                "stop them (SIGTERM) and run `gigq migrate` again"
            )
        with JobQueue(target, plugin_manager=obj.pm, create=True) as copy:
            if copy.target == origin.target:
                raise UserError(f"the source and the target are the same queue ({copy.target})")
            target_store = copy.storage
            if not isinstance(target_store, Transfer):
                _cannot(copy, "import jobs")
            refuse_non_empty(copy.target, sum(copy.storage.count(JobFilter()).values()))
            counts = target_store.import_(source_store.export(), copy.clock.now())
            report = {"from": origin.target, "to": copy.target, "counts": counts}
    if obj.json:
        fmt.echo_json(report)
        return
    fmt.echo(f"Copied {_summary(counts)} from {report['from']} to {report['to']}.")
    if counts["lost"]:
        click.echo(
            f"{fmt.plural(counts['lost'], 'job')} still running under a dead worker's lease "
            "arrived as a rescue leaves them: pending again (or failed when no attempt was "
            'left), the attempt counted, "worker lost".'
        )
    fmt.echo(
        f"The source is unchanged. Start workers on {report['to']}; keep the source as a "
        "backup or delete it."
    )


COMMANDS = (doctor, backup, upgrade, migrate)

__all__ = ["COMMANDS", "backup", "doctor", "migrate", "upgrade"]
