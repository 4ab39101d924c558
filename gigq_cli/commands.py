"""The built-in commands."""

from __future__ import annotations

import json
from typing import Any

import click

from gigq_cli.main import CliContext, pass_cli


def _parse_param(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise click.BadParameter(f"{text!r} is not of the form key=value", param_hint="--param")
    try:
        return key, json.loads(raw)
    except ValueError:
        return key, raw


def _check_importable(path: str) -> None:
    """Refuse at submit a function that a worker could not import."""
    from gigq_core.errors import InvalidJobError
    from gigq_core.jobs import function_path, import_function

    stored = function_path(path)
    try:
        import_function(stored)
    except Exception as err:  # any import failure is the user's to fix: say which
        raise InvalidJobError(f"cannot import function '{path}': {err}") from None


@click.command()
@click.argument("function")
@click.option("--name", help="Job name (default: the function's name).")
@click.option("--param", "-p", "params", multiple=True, help="key=value; JSON when it parses.")
@click.option("--params-json", help="All params as one JSON object.")
@click.option("--priority", type=int, default=0, show_default=True)
@click.option("--max-attempts", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--timeout", type=float, default=300, show_default=True, help="Seconds.")
@click.option("--description", default="")
@click.option("--retry-delay", type=click.FloatRange(min=0), help="Fixed seconds between tries.")
@click.option("--delay", type=click.FloatRange(min=0), help="Run no sooner than this many s.")
@click.option("--queue", default="default", show_default=True)
@click.option("--depends-on", multiple=True, help="Id (or unique prefix) of a dependency.")
@pass_cli
def submit(
    obj: CliContext,
    function: str,
    name: str | None,
    params: tuple[str, ...],
    params_json: str | None,
    priority: int,
    max_attempts: int,
    timeout: float,
    description: str,
    retry_delay: float | None,
    delay: float | None,
    queue: str,
    depends_on: tuple[str, ...],
) -> None:
    """Submit a job that calls FUNCTION (package.module:function)."""
    from gigq_core.jobs import Job

    values: dict[str, Any] = {}
    if params_json is not None:
        try:
            values = json.loads(params_json)
        except ValueError as err:
            raise click.BadParameter(f"not JSON: {err}", param_hint="--params-json") from None
        if not isinstance(values, dict):
            raise click.BadParameter("must be a JSON object", param_hint="--params-json")
    values.update(_parse_param(p) for p in params)
    _check_importable(function)
    with obj.open_queue(create=True) as jobs:
        deps = [jobs.resolve_id(d) for d in depends_on]
        job = Job(
            name or function.replace(":", ".").rsplit(".", 1)[-1],
            function,
            params=values,
            priority=priority,
            dependencies=deps,
            max_attempts=max_attempts,
            timeout=timeout,
            description=description,
            retry_delay=retry_delay,
            delay=delay,
            queue=queue,
        )
        job_id = jobs.submit(job)
    click.echo(json.dumps(job_id) if obj.json else f"Job submitted: {job_id}")


@click.command()
@click.option("--worker-id", help="Name of this worker (default: host-pid-random).")
@click.option("--polling-interval", type=click.FloatRange(min=0, min_open=True), default=None)
@click.option("--once", is_flag=True, help="Process at most one job, then exit.")
@click.option("--concurrency", type=click.IntRange(min=1), default=None)
@click.option("--queue", "queues", multiple=True, help="Serve this queue (repeatable).")
@click.option("--lease", type=click.FloatRange(min=0, min_open=True), default=None)
@click.option("--heartbeat", type=click.FloatRange(min=0, min_open=True), default=None)
@click.option("--grace", type=click.FloatRange(min=0), default=None)
@click.option("--log-level", default="INFO", show_default=True)
@pass_cli
def worker(
    obj: CliContext,
    worker_id: str | None,
    polling_interval: float | None,
    once: bool,
    concurrency: int | None,
    queues: tuple[str, ...],
    lease: float | None,
    heartbeat: float | None,
    grace: float | None,
    log_level: str,
) -> None:
    """Run a worker until SIGTERM/SIGINT (or one job with --once)."""
    from gigq_core.logs import setup_logging
    from gigq_core.worker import Worker

    setup_logging(log_level)
    runner = Worker(
        obj.open_queue(create=True),
        worker_id=worker_id,
        polling_interval=polling_interval,
        concurrency=concurrency,
        queues=list(queues) or None,
        lease=lease,
        heartbeat=heartbeat,
        grace=grace,
    )
    try:
        if once:
            ran = runner.process_one()
            if not obj.json:
                click.echo("Processed one job." if ran else "No job was ready.")
        else:
            runner.start()
    finally:
        runner.close()


BUILTIN = (submit, worker)

__all__ = ["BUILTIN", "submit", "worker"]
