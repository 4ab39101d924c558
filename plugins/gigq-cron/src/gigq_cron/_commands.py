"""`gigq cron add | list | remove`."""

from __future__ import annotations

import json
from typing import Any

import click
from gigq.plugin import InvalidJobError

from gigq_cron._schedules import (
    Schedule,
    add_schedule,
    list_schedules,
    remove_schedule,
    states,
)


def _parse_param(text: str) -> tuple[str, Any]:
    """`key=value`, the value as JSON when it parses, else as a string."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise click.BadParameter(f"{text!r} is not of the form key=value", param_hint="--param")
    try:
        return key, json.loads(raw)
    except ValueError:
        return key, raw
    except RecursionError:  # as `gigq submit` says it: a user error (1), one sentence
        raise InvalidJobError(
            f"--param {key!r} is JSON nested too deeply to read (see the max_nesting_depth setting)"
        ) from None


def _check_importable(path: str, allowed_modules: tuple[str, ...]) -> None:
    """Refuse what the queue's function policy refuses (78, as submit), then a function a
    worker could not import."""
    from gigq.plugin import DisallowedFunctionError, resolve_function

    try:
        resolve_function(path, allowed_modules, main_allowed=False)
    except DisallowedFunctionError:
        raise
    except Exception as err:  # any import failure is the user's to fix: say which
        raise InvalidJobError(f"cannot import function '{path}': {err}") from None


@click.group()
def cron() -> None:
    """Periodic jobs (gigq-cron): schedules kept in the queue, run by every worker."""


@cron.command("add")
@click.argument("name")
@click.argument("expression")
@click.argument("function")
@click.option("--param", "-p", "params", multiple=True, help="key=value; JSON when it parses.")
@click.option("--params-json", help="All params as one JSON object.")
@click.option("--queue", default="default", show_default=True, help="Queue of the runs.")
@click.option("--priority", type=int, default=0, show_default=True)
@click.option("--max-attempts", type=click.IntRange(min=1), default=3, show_default=True)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=300.0,
    show_default=True,
    help="Seconds a run may take.",
)
@click.option(
    "--tz",
    "timezone",
    default="UTC",
    show_default=True,
    help="IANA time zone the expression is read in.",
)
@click.option("--replace", is_flag=True, help="Replace a schedule of the same name.")
@click.option(
    "--create",
    is_flag=True,
    envvar="GIGQ_CREATE",
    help="Create the database if it does not exist (by default only submit does).",
)
@click.pass_obj
def add_command(
    obj: Any,
    name: str,
    expression: str,
    function: str,
    params: tuple[str, ...],
    params_json: str | None,
    queue: str,
    priority: int,
    max_attempts: int,
    timeout: float,
    timezone: str,
    replace: bool,
    create: bool,
) -> None:
    """Run FUNCTION on the cron EXPRESSION (five fields, e.g. "*/5 * * * *"), as NAME."""
    values: dict[str, Any] = {}
    if params_json is not None:
        try:
            values = json.loads(params_json)
        except ValueError as err:
            raise click.BadParameter(f"not JSON: {err}", param_hint="--params-json") from None
        except RecursionError:
            raise InvalidJobError(
                "--params-json is nested too deeply to read (see the max_nesting_depth setting)"
            ) from None
        if not isinstance(values, dict):
            raise click.BadParameter("must be a JSON object", param_hint="--params-json")
    values.update(_parse_param(p) for p in params)
    schedule = Schedule(
        name=name,
        expression=expression,
        function=function,
        params=values,
        queue=queue,
        priority=priority,
        max_attempts=max_attempts,
        timeout=timeout,
        timezone=timezone,
    ).check()
    obj.add_cwd_to_path()  # the function may live in the current directory, as for submit
    # A mistyped --db or the wrong folder must not quietly start a queue no worker serves.
    missing = "submit a job first or pass --create"
    with obj.open_queue(create=create, missing=missing) as opened:
        _check_importable(schedule.function, tuple(opened.settings.allowed_modules))
        stored = add_schedule(opened, schedule, replace_existing=replace)
        upcoming = stored.next_tick(opened.clock.now())
    if obj.json:
        click.echo(json.dumps({"name": stored.name, "next_run": upcoming.isoformat()}))
    else:
        click.echo(f"Schedule added: {stored.name} (next run {upcoming.isoformat()})")


@cron.command("list")
@click.pass_obj
def list_command(obj: Any) -> None:
    """List the schedules, with their next and last runs (UTC)."""
    from tabulate import tabulate

    with obj.open_queue() as opened:
        schedules = list_schedules(opened)
        known = states(opened)
        now = opened.clock.now()
    rows: list[dict[str, Any]] = []
    for s in schedules:
        previous, upcoming = known.get(s.name, (None, None))
        if upcoming is None or upcoming < now:
            try:
                upcoming = s.next_tick(now)
            except InvalidJobError:  # stored by a version that did not check: never fires
                upcoming = None
        rows.append(
            {
                "name": s.name,
                "expression": s.expression,
                "timezone": s.timezone,
                "function": s.function,
                "params": dict(s.params),
                "queue": s.queue,
                "next_run": upcoming.isoformat() if upcoming else None,
                "last_run": previous.isoformat() if previous else None,
            }
        )
    if obj.json:
        click.echo(json.dumps(rows))
        return
    if not rows:
        click.echo("No schedules.")
        return
    from gigq.plugin import printable

    click.echo(
        tabulate(
            [
                # Escaped: a stored name or queue must not drive the reader's terminal.
                tuple(
                    printable(cell)
                    for cell in (
                        r["name"],
                        r["expression"] + ("" if r["timezone"] == "UTC" else f" ({r['timezone']})"),
                        r["function"],
                        r["queue"],
                        r["next_run"] or "never fires",
                        r["last_run"] or "-",
                    )
                )
                for r in rows
            ],
            headers=("name", "schedule", "function", "queue", "next run", "last run"),
        )
    )


@cron.command("remove")
@click.argument("name")
@click.pass_obj
def remove_command(obj: Any, name: str) -> None:
    """Remove schedule NAME (runs already queued stay)."""
    with obj.open_queue() as opened:
        remove_schedule(opened, name)
    if obj.json:
        click.echo(json.dumps({"removed": name}))
    else:
        click.echo(f"Schedule removed: {name}")
