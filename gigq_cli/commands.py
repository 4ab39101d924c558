"""The built-in commands."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from gigq_cli.main import CliContext, pass_cli
from gigq_core.hookspecs import hookimpl


def _parse_param(text: str) -> tuple[str, Any]:
    """`key=value`, the value as JSON when it parses, else as a string (`key=@PATH`: the
    file's text, as JSON when it parses); a user error if bad."""
    from gigq_core.errors import InvalidJobError

    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise InvalidJobError(f"--param {text!r} is not of the form key=value")
    if raw.startswith("@") and len(raw) > 1:
        raw = _read_text(raw[1:], f"--param {key}")
    try:
        return key, json.loads(raw)
    except ValueError:
        return key, raw
    except RecursionError:
        raise InvalidJobError(
            f"--param {key!r} is JSON nested too deeply to read (see the max_nesting_depth setting)"
        ) from None


def _read_text(path: str, what: str) -> str:
    """The text of file `path` (`-`: standard input), for `what` (named in errors)."""
    import sys

    from gigq_core.errors import InvalidJobError

    if path == "-":
        return sys.stdin.read()
    try:
        with open(path, encoding="utf-8") as file:
            return file.read()
    except UnicodeDecodeError:
        raise InvalidJobError(f"{what}: {path} is not UTF-8 text") from None
    except OSError as err:
        raise InvalidJobError(f"{what}: cannot read {path}: {err.strerror}") from None


def _params_object(text: str, what: str) -> dict[str, Any]:
    """A JSON object of params, or a user error naming `what`."""
    from gigq_core.errors import InvalidJobError

    try:
        values = json.loads(text)
    except ValueError as err:
        raise InvalidJobError(f"{what} is not valid JSON: {err}") from None
    except RecursionError:
        raise InvalidJobError(
            f"{what} is nested too deeply to read (see the max_nesting_depth setting)"
        ) from None
    if not isinstance(values, dict):
        raise InvalidJobError(f"{what} must be a JSON object, like '{{\"a\": 1}}'")
    return values


def _run_at(text: str) -> Any:
    """An ISO 8601 time (a zone offset, or UTC when none is given) as an aware datetime."""
    from datetime import UTC, datetime

    from gigq_core.errors import InvalidJobError

    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidJobError(
            f"--run-at {text!r} is not an ISO 8601 time, like 2030-01-31T09:00:00+01:00"
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _retry(text: str) -> tuple[str, dict[str, Any]]:
    """`NAME` or `NAME:{json parameters}` (e.g. `fixed:{"delay": 10}`)."""
    name, sep, raw = text.partition(":")
    if not name:
        from gigq_core.errors import InvalidJobError

        raise InvalidJobError(f"--retry {text!r} names no strategy")
    return name, (_params_object(raw, f"--retry {name}'s parameters") if sep else {})


def _check_importable(path: str) -> None:
    """Refuse at submit a function that a worker could not import."""
    from gigq_core.errors import DisallowedFunctionError, InvalidJobError
    from gigq_core.jobs import function_path, import_function

    stored = function_path(path)
    try:
        import_function(stored)
    except DisallowedFunctionError:
        raise
    except Exception as err:  # any import failure is the user's to fix: say which
        raise InvalidJobError(f"cannot import function '{path}': {err}") from None


@click.command()
@click.argument("function")
@click.option("--name", help="Job name (default: the function's name).")
@click.option(
    "--param",
    "-p",
    "params",
    multiple=True,
    help="key=value; JSON when it parses; key=@PATH reads the value from a file.",
)
@click.option("--params-json", help="All params as one JSON object ('-': read it from stdin).")
@click.option(
    "--params-file",
    type=click.Path(dir_okay=False),
    help="All params as one JSON object in this file.",
)
@click.option("--priority", type=int, default=0, show_default=True)
@click.option("--max-attempts", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--timeout", type=float, default=300, show_default=True, help="Seconds.")
@click.option("--description", default="")
@click.option("--retry-delay", type=click.FloatRange(min=0), help="Fixed seconds between tries.")
@click.option(
    "--retry",
    "retry_spec",
    metavar="NAME[:JSON]",
    help='Retry strategy and its parameters, e.g. exponential or fixed:{"delay": 10}.',
)
@click.option("--delay", type=click.FloatRange(min=0), help="Run no sooner than this many s.")
@click.option("--run-at", help="Run no sooner than this ISO 8601 time (UTC unless a zone).")
@click.option("--unique-key", help="Refuse a second job with this key while one is active.")
@click.option(
    "--unique-scope",
    type=click.Choice(["active", "success"]),
    default="active",
    show_default=True,
    help="active: while pending or running; success: also once completed.",
)
@click.option("--queue", default="default", show_default=True)
@click.option("--depends-on", multiple=True, help="Id (or unique prefix) of a dependency.")
@click.option(
    "--create-folders",
    is_flag=True,
    help="Create the missing folders of a new database's path (a mistyped one is refused).",
)
@pass_cli
def submit(
    obj: CliContext,
    function: str,
    name: str | None,
    params: tuple[str, ...],
    params_json: str | None,
    params_file: str | None,
    priority: int,
    max_attempts: int,
    timeout: float,
    description: str,
    retry_delay: float | None,
    retry_spec: str | None,
    delay: float | None,
    run_at: str | None,
    unique_key: str | None,
    unique_scope: str,
    queue: str,
    depends_on: tuple[str, ...],
    create_folders: bool,
) -> None:
    """Submit a job that calls FUNCTION (package.module:function).

    Creates the database if it does not exist (saying so on stderr)."""
    from gigq_core.errors import InvalidJobError
    from gigq_core.jobs import Job

    values: dict[str, Any] = {}
    if params_json is not None and params_file is not None:
        raise InvalidJobError("give --params-json or --params-file, not both")
    if params_json is not None:
        text = _read_text("-", "--params-json") if params_json == "-" else params_json
        values = _params_object(text, "--params-json")
    elif params_file is not None:
        values = _params_object(_read_text(params_file, "--params-file"), "--params-file")
    values.update(_parse_param(p) for p in params)
    obj.add_cwd_to_path()
    _check_importable(function)
    # Built before the queue is opened: a job refused for its own values (a timeout of 0,
    # text that is not UTF-8) creates no database.
    job = Job(
        name or function.replace(":", ".").rsplit(".", 1)[-1],
        function,
        params=values,
        priority=priority,
        max_attempts=max_attempts,
        timeout=timeout,
        description=description,
        retry_delay=retry_delay,
        retry=None if retry_spec is None else _retry(retry_spec),
        delay=delay,
        run_at=None if run_at is None else _run_at(run_at),
        unique_key=unique_key,
        unique_scope=unique_scope,
        queue=queue,
    )
    with obj.open_queue(create=True, create_folders=create_folders) as jobs:
        job.dependencies = [jobs.resolve_id(d) for d in depends_on]
        job_id = jobs.submit(job)
    if obj.json:
        click.echo(json.dumps(job_id))
    elif job_id != job.id:  # the unique key is held: the job holding it is the answer
        click.echo(f"Already queued with unique key {unique_key!r}: {job_id}")
    else:
        click.echo(f"Job submitted: {job_id}")


@click.command()
@click.option("--worker-id", help="Name of this worker (default: host-pid-random).")
@click.option("--polling-interval", type=click.FloatRange(min=0, min_open=True), default=None)
@click.option("--once", is_flag=True, help="Process at most one job, then exit.")
@click.option("--burst", is_flag=True, help="Exit once nothing is running and no job is ready.")
# max: gigq_core.settings.MAX_CONCURRENCY (not imported here: `gigq --help` stays light).
@click.option("--concurrency", type=click.IntRange(min=1, max=1024), default=None)
@click.option(
    "--queue",
    "queues",
    multiple=True,
    metavar="NAME[=N]",
    help="Serve this queue (repeatable); NAME=N runs at most N of its jobs at once.",
)
@click.option(
    "--executor",
    type=click.Choice(["process", "inline"]),
    default=None,
    help="process: jobs in child processes (default); inline: in the worker itself.",
)
@click.option(
    "--max-jobs-per-child",
    type=click.IntRange(min=0),
    default=None,
    help="Recycle a child process after this many jobs (0: never).",
)
@click.option(
    "--max-child-memory",
    type=click.IntRange(min=0),
    default=None,
    help="Recycle a child process past this many MiB of memory (0: never).",
)
@click.option(
    "--prefetch-window",
    type=click.FloatRange(min=0, max=1),
    default=None,
    help="Seconds of expected work to reserve beyond free slots (0: no prefetch).",
)
@click.option(
    "--prefetch-max",
    type=click.IntRange(min=0),
    default=None,
    help="Most jobs held reserved beyond free slots.",
)
@click.option("--lease", type=click.FloatRange(min=0, min_open=True), default=None)
@click.option("--heartbeat", type=click.FloatRange(min=0, min_open=True), default=None)
@click.option("--grace", type=click.FloatRange(min=0), default=None)
@click.option(
    "--reload",
    is_flag=True,
    help="Development: restart the job processes when a Python file of your code changes "
    "(needs pip install 'gigq[reload]').",
)
@click.option(
    "--path",
    "paths",
    multiple=True,
    type=click.Path(exists=True, file_okay=False, resolve_path=True),
    metavar="DIR",
    help="Also import job functions from DIR (repeatable), as from the current folder: "
    "after the installed packages.",
)
@click.option(
    "--create",
    is_flag=True,
    envvar="GIGQ_CREATE",
    help="Create the database if it does not exist (by default only submit does); "
    "also GIGQ_CREATE=1.",
)
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    default="INFO",
    show_default=True,
)
@pass_cli
def worker(
    obj: CliContext,
    worker_id: str | None,
    polling_interval: float | None,
    once: bool,
    burst: bool,
    concurrency: int | None,
    queues: tuple[str, ...],
    executor: str | None,
    max_jobs_per_child: int | None,
    max_child_memory: int | None,
    prefetch_window: float | None,
    prefetch_max: int | None,
    lease: float | None,
    heartbeat: float | None,
    grace: float | None,
    reload: bool,
    paths: tuple[str, ...],
    create: bool,
    log_level: str,
) -> None:
    """Run a worker until SIGTERM/SIGINT (or one job with --once).

    A worker runs the code it started with: restart it after changing your jobs' code, or
    run it with --reload while developing."""
    from gigq_core.logs import setup_logging
    from gigq_core.worker import Worker

    names, limits = _parse_queues(queues)
    if reload:
        from gigq_core.errors import UserError
        from gigq_core.reload import require_watchfiles

        if once:
            raise UserError("--reload does not go with --once, which runs one job in this process")
        require_watchfiles()
    # Appended like the current folder, and before it: a module of yours named like one of
    # the standard library or an installed package (queue.py, logging.py) never replaces
    # it, in GigQ's own imports either; PYTHONPATH puts a folder first.
    for path in paths:
        if path not in sys.path:
            sys.path.append(path)
    obj.add_cwd_to_path()
    setup_logging(log_level)
    # Given to the queue too, so the settings chain checks them together (heartbeat < lease).
    jobs = obj.open_queue(
        create=create,
        missing=MISSING,
        polling_interval=polling_interval,
        concurrency=concurrency,
        lease=lease,
        heartbeat=heartbeat,
        grace=grace,
        executor=executor,
        max_jobs_per_child=max_jobs_per_child,
        max_child_memory=max_child_memory,
        prefetch_window=prefetch_window,
        prefetch_max=prefetch_max,
    )
    runner = Worker(
        jobs,
        worker_id=worker_id,
        polling_interval=polling_interval,
        concurrency=concurrency,
        queues=names or None,
        lease=lease,
        heartbeat=heartbeat,
        grace=grace,
        executor=executor,
        queue_concurrency=limits or None,
        max_jobs_per_child=max_jobs_per_child,
        max_child_memory=max_child_memory,
        prefetch_window=prefetch_window,
        prefetch_max=prefetch_max,
    )
    watcher = None
    try:
        if reload:
            watcher = _watch_code(runner)
        if once:
            ran = _process_one(runner)
            if obj.json:
                click.echo(json.dumps({"processed": ran}))
            else:
                click.echo("Processed one job." if ran else "No job was ready.")
        else:
            runner.start(burst=burst)
    finally:
        if watcher is not None:
            watcher.stop()
        runner.close()
        jobs.close()


#: What a command that serves or adds to an existing queue says of a missing database: a typo
#: or the wrong folder must not quietly start an empty queue nobody submits to.
MISSING = "submit a job first or pass --create"


def _watch_code(runner: Any) -> Any:
    """`--reload`: start watching the folders of the user's code (a `CodeWatcher`)."""
    import logging

    from gigq_core.errors import UserError
    from gigq_core.reload import CodeWatcher, code_folders

    if runner.executor != "process":
        raise UserError(
            "--reload restarts the job processes, so it needs the process executor "
            f"(this worker's executor is {runner.executor!r})"
        )
    folders = code_folders()
    logging.getLogger("gigq").info(
        "worker %s: --reload watches %s", runner.worker_id, ", ".join(folders)
    )
    watcher = CodeWatcher(runner, folders)
    watcher.start()
    return watcher


def _process_one(runner: Any) -> bool:
    """`--once`: the job runs in this thread, so SIGTERM (like Ctrl-C) interrupts it and
    the worker hands it back (its attempt not counted) before the command exits 0."""
    import signal

    def stopped(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stopped)
    try:
        return bool(runner.process_one())
    except KeyboardInterrupt:
        click.echo("Stopped: the job was handed back.", err=True)
        raise SystemExit(0) from None
    finally:
        signal.signal(signal.SIGTERM, previous)


def _parse_queues(values: tuple[str, ...]) -> tuple[list[str], dict[str, int]]:
    """`--queue NAME[=N]` values as queue names and per-queue limits."""
    names: list[str] = []
    limits: dict[str, int] = {}
    for value in values:
        name, sep, cap = value.partition("=")
        if not name:
            raise click.BadParameter(f"{value!r} names no queue", param_hint="--queue")
        if sep:
            if not cap.isdigit() or int(cap) < 1:
                raise click.BadParameter(
                    f"{value!r}: the limit after '=' must be a whole number of at least 1",
                    param_hint="--queue",
                )
            limits[name] = int(cap)
        names.append(name)
    return names, limits


def _builtin() -> tuple[click.Command, ...]:
    from gigq_cli import admin, jobs, maintenance, workflows

    return (
        submit,
        worker,
        *jobs.COMMANDS,
        *workflows.COMMANDS,
        *admin.COMMANDS,
        *maintenance.COMMANDS,
    )


#: Every built-in command, in the order `gigq --help` lists them.
BUILTIN = _builtin()


@hookimpl(tryfirst=True)  # first, so a plugin's command of the same name replaces a built-in
def gigq_register_commands(cli: click.Group) -> None:
    """Add the built-in commands (this module is the CLI's own plugin; see `create_cli`)."""
    for command in BUILTIN:
        cli.add_command(command)


__all__ = ["BUILTIN", "gigq_register_commands", "submit", "worker"]
