"""`gigq doctor`, `gigq backup` and `gigq upgrade`: health checks, online copies and schema
upgrades of a queue.

They reach the storage through the port's optional capabilities (`diagnose()`,
`backup(path)`, `upgrade()`), so the CLI never imports an adapter.
"""

from __future__ import annotations

from pathlib import Path

import click

from gigq_cli import _format as fmt
from gigq_cli.main import CliContext, pass_cli

#: Exit code of `gigq doctor` when a check failed.
DOCTOR_FAILED = 1

_LEVEL = {"ok": "ok", "warn": "WARN", "fail": "FAIL"}


def _capability(queue: object, name: str, what: str) -> object:
    from gigq_core.errors import ConfigError

    method = getattr(getattr(queue, "storage", None), name, None)
    if not callable(method):
        raise ConfigError(f"this storage ({queue}) cannot {what}")
    return method


@click.command()
@pass_cli
def doctor(obj: CliContext) -> None:
    """Check the queue's health; each finding comes with a one-line fix.

    Exit 0 when nothing failed (warnings allowed), 1 when a check failed.
    """
    with obj.open_queue() as queue:
        diagnose = _capability(queue, "diagnose", "run health checks")
        checks = diagnose()  # type: ignore[operator]
        target = queue.target
    if obj.json:
        fmt.echo_json({"target": target, "checks": checks})
    else:
        click.echo(f"Checking {target}")
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
        copy = _capability(queue, "backup", "make backups")
        copy(path)  # type: ignore[operator]
    size = path.stat().st_size
    if obj.json:
        fmt.echo_json({"backup": str(path), "bytes": size})
    else:
        click.echo(f"Backed up to {path} ({size:,} bytes).")


@click.command()
@pass_cli
def upgrade(obj: CliContext) -> None:
    """Apply schema changes that do not run on open; refused while workers are live.

    Additive changes apply whenever GigQ opens a database; the others need this command,
    with every worker stopped (exit 75 otherwise). Take a `gigq backup` first.
    """
    with obj.open_queue(upgrading=True) as queue:
        run = _capability(queue, "upgrade", "upgrade its schema")
        report = run()  # type: ignore[operator]
    if obj.json:
        fmt.echo_json(report)
    elif report["applied"]:
        click.echo(
            f"Upgraded the schema from version {report['from_version']} to {report['to_version']}."
        )
    else:
        click.echo(f"The schema is up to date (version {report['to_version']}).")


COMMANDS = (doctor, backup, upgrade)

__all__ = ["COMMANDS", "backup", "doctor", "upgrade"]
