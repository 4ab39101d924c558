"""Commands about jobs: list, status, cancel, requeue, clear, wait."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable, Sequence
from datetime import UTC
from typing import TYPE_CHECKING, Any

import click

from gigq_cli import _format as fmt
from gigq_cli._types import Count, FiniteFloat
from gigq_cli.main import CliContext, pass_cli

if TYPE_CHECKING:
    from gigq_core.queue import JobQueue
    from gigq_core.records import JobRecord

#: `gigq wait` exit codes (docs/guarantees.md D10).
WAIT_FAILED = 3
WAIT_TIMEOUT = 124

#: Jobs read per page when a filter selects jobs for a bulk change.
_PAGE = 1000

_LIST_HEADERS = ("id", "name", "status", "priority", "attempts", "created", "updated")

#: The status `list` shows for a job whose stored row cannot be read (see its stderr line).
_UNREADABLE = "unreadable"  # gigq_core.views.UNREADABLE, without importing it at startup


def check_statuses(values: Sequence[str]) -> list[str]:
    """The values, if each names a job state; else a user error naming the bad one."""
    from gigq_core.errors import UserError
    from gigq_core.records import JobStatus

    known = [s.value for s in JobStatus]
    for value in values:
        if value not in known:
            raise UserError(f"unknown status '{value}'; use one of: {', '.join(known)}")
    return list(values)


def _state(record: JobRecord) -> str:
    """A job's status, or "unreadable" for the stand-in of a row that cannot be read."""
    from gigq_core.records import UnreadableJob

    return _UNREADABLE if isinstance(record, UnreadableJob) else record.status.value


def _attempts(info: dict[str, Any]) -> str:
    return f"{info['attempts']}/{info['max_attempts']}"


@click.command("list")
@click.option("--status", "statuses", multiple=True, help="Only jobs in this state (repeatable).")
@click.option("--queue", "queues", multiple=True, help="Only jobs of this queue (repeatable).")
@click.option("--name", help="Only jobs with this exact name.")
@click.option(
    "--limit", type=Count(), default=100, show_default=True, help="Show at most this many jobs."
)
@click.option(
    "--sort",
    type=click.Choice(["newest", "oldest", "priority"]),
    default="newest",
    show_default=True,
    help="Submit order (newest or oldest first), or claim order (priority).",
)
@pass_cli
def list_jobs(
    obj: CliContext,
    statuses: tuple[str, ...],
    queues: tuple[str, ...],
    name: str | None,
    limit: int,
    sort: str,
) -> None:
    """List jobs, newest first."""
    from gigq_core.queue import make_filter
    from gigq_core.views import listed_job_dict

    check_statuses(statuses)
    with obj.open_queue() as queue:
        records = queue.jobs(
            list(statuses) or None, limit, queue=list(queues) or None, name=name, order=sort
        )
        jobs = [listed_job_dict(record, queue.serializer) for record in records]
        # Counted only when the listing stopped at its limit: then it may have left some out.
        where = make_filter(list(statuses) or None, list(queues) or None, name)
        total = sum(queue.storage.count(where).values()) if len(jobs) >= limit else len(jobs)
    if obj.json:
        fmt.echo_json(jobs)
        return
    if not jobs:
        click.echo("No jobs found.")
        return
    reference = fmt.now()
    rows = [
        (
            j["id"],
            j["name"],
            j["status"],
            j["priority"],
            _attempts(j),
            fmt.human_time(j["created_at"], reference),
            fmt.human_time(j["updated_at"], reference),
        )
        if j["status"] != _UNREADABLE
        else (j["id"], fmt.NONE, _UNREADABLE, fmt.NONE, fmt.NONE, fmt.NONE, fmt.NONE)
        for j in jobs
    ]
    click.echo(fmt.table(rows, _LIST_HEADERS))
    for j in jobs:
        if j["status"] == _UNREADABLE:
            fmt.echo(f"Job {j['id']} cannot be read: {j['error']}.", err=True)
    if total > len(jobs):
        click.echo(f"{len(jobs)} of {total} jobs shown; use --limit to see more.", err=True)


@click.command(short_help="Show a job.")
@click.argument("job_id", metavar="ID")
@click.option("--show-params", is_flag=True, help="Also print the params.")
@click.option("--show-result", is_flag=True, help="Also print the result.")
@click.option("--show-executions", is_flag=True, help="Also print one row per attempt.")
@pass_cli
def status(
    obj: CliContext, job_id: str, show_params: bool, show_result: bool, show_executions: bool
) -> None:
    """Show a job: its fields, and on request params, result and attempts.

    ID may be any unique prefix of the job's id.
    """
    from gigq_core.views import status_dict

    with obj.open_queue() as queue:
        record = queue.get_job(queue.resolve_id(job_id))
        info = status_dict(record, queue.executions(record.id), queue.serializer)
        if obj.json:
            fmt.echo_json(info)
            return
        found = queue.storage.get_many(record.dependencies) if record.dependencies else {}
        depends = [(d, found.get(d)) for d in record.dependencies]
        paused = record.queue in queue.storage.paused_queues()
    reference = fmt.now()
    fields: list[tuple[str, Any]] = [
        ("Job", f"{info['name']} ({info['id']})"),
        ("Status", info["status"] + (" (cancel requested)" * bool(info["cancel_requested"]))),
        ("Function", info["function"]),
        ("Queue", info["queue"]),
        ("Priority", info["priority"]),
        ("Attempts", _attempts(info)),
        ("Timeout", fmt.NONE if info["timeout"] is None else f"{info['timeout']:g} s"),
        ("Dependencies", _dependency_lines(depends) or fmt.NONE),
    ]
    if info["workflow_id"]:
        fields.append(("Workflow", f"{info['workflow_name'] or ''} ({info['workflow_id']})"))
    if info["description"]:
        fields.append(("Description", info["description"]))
    fields += [
        ("Created", fmt.when(info["created_at"], reference)),
        ("Updated", fmt.when(info["updated_at"], reference)),
    ]
    if info["status"] == "pending":
        fields.append(("Run at", fmt.when(info["run_at"], reference)))
        fields.append(("Waiting", _waiting(record, depends, paused, reference)))
    fields += [
        ("Started", fmt.when(info["started_at"], reference)),
        ("Completed", fmt.when(info["completed_at"], reference)),
        ("Worker", info["worker_id"] or fmt.NONE),
    ]
    if info["error"]:
        fields.append(("Error", fmt.lines(info["error"])))
    click.echo(fmt.fields(fields))
    if info["error"]:
        _echo_last_traceback(info)
    if show_params:
        click.echo("\nParams:\n" + fmt.to_json(info["params"]))
    if show_result:
        click.echo("\nResult:\n" + fmt.to_json(info["result"]))
    if show_executions:
        click.echo("\nExecutions:")
        click.echo(_executions_table(info["executions"], reference) or "(none)")


#: Most dependencies `status` lists, those not completed first.
_SHOWN_DEPENDENCIES = 20

#: Most lines of a traceback `status` prints, the last ones (where the error is raised).
_TRACEBACK_LINES = 20


def _dependency_lines(depends: Sequence[tuple[str, JobRecord | None]]) -> tuple[str, ...]:
    """One line per dependency, "id-prefix  name  status", those that hold the job back
    first; past _SHOWN_DEPENDENCIES, how many more there are."""
    ordered = sorted(depends, key=lambda d: d[1] is not None and _state(d[1]) == "completed")
    lines = [
        f"{dep_id[:8]}  {found.name}  {_state(found)}"
        if found is not None
        else f"{dep_id[:8]}  (deleted)"
        for dep_id, found in ordered[:_SHOWN_DEPENDENCIES]
    ]
    if len(ordered) > _SHOWN_DEPENDENCIES:
        lines.append(f"... and {len(ordered) - _SHOWN_DEPENDENCIES} more")
    return tuple(lines)


def _waiting(
    record: JobRecord,
    depends: Sequence[tuple[str, JobRecord | None]],
    paused: bool,
    reference: Any,
) -> tuple[str, ...]:
    """Why a pending job is not running yet: each thing that holds it back, one a line."""
    reasons = []
    unfinished = sum(1 for _, d in depends if d is None or _state(d) != "completed")
    if unfinished:
        reasons.append(
            f"{unfinished} of {len(depends)} dependencies not completed"
            if len(depends) > 1
            else "its dependency is not completed"
        )
    if paused:
        resume = f"gigq queue resume {shlex.quote(record.queue)}"
        reasons.append(f"its queue '{record.queue}' is paused (`{resume}` lets workers claim it)")
    if record.run_at > reference:
        utc = record.run_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
        ahead = (record.run_at - reference).total_seconds()
        reasons.append(f"scheduled for {utc}, in {fmt.duration(ahead)}")
    return tuple(reasons) or (f"nothing: ready for a worker of queue '{record.queue}'",)


def _echo_last_traceback(info: dict[str, Any]) -> None:
    """The traceback of the last attempt that has one, its last _TRACEBACK_LINES lines,
    indented: the error's message ends it, and a line of that must not pass for output of
    its own."""
    last = next((e for e in reversed(info["executions"]) if e["traceback"]), None)
    if last is None:
        return
    lines = last["traceback"].rstrip("\n").split("\n")
    title = f"Traceback of attempt {last['attempt']}"
    if len(lines) > _TRACEBACK_LINES:
        title += (
            f" (its last {_TRACEBACK_LINES} of {len(lines)} lines; "
            f"`gigq --json status {info['id']}` has it whole)"
        )
        lines = lines[-_TRACEBACK_LINES:]
    click.echo()
    fmt.echo(f"{title}:")
    click.echo("\n".join(f"  {fmt.clean(line)}" for line in lines))


def _executions_table(executions: Sequence[dict[str, Any]], reference: Any) -> str:
    if not executions:
        return ""
    rows = []
    for e in executions:
        started = fmt.parse_time(e["started_at"])
        ended = fmt.parse_time(e["completed_at"])
        took = fmt.duration((ended - started).total_seconds()) if started and ended else fmt.NONE
        rows.append(
            (
                e["attempt"],
                e["status"],
                e["worker_id"],
                fmt.when(started, reference),
                took,
                fmt.short_error(e["error"], 80),
            )
        )
    return fmt.table(rows, ("attempt", "status", "worker", "started", "took", "error"))


# -- bulk changes --------------------------------------------------------------------------


def _select(
    queue: JobQueue,
    ids: Sequence[str],
    statuses: Sequence[str],
    queues: Sequence[str],
    name: str | None,
    default_statuses: Sequence[str],
) -> list[str]:
    """The job ids a cancel or requeue applies to: the ids given, or those a filter picks."""
    from gigq_core.queue import make_filter

    check_statuses(statuses)
    has_filter = bool(statuses or queues or name is not None)
    if ids and has_filter:
        raise click.UsageError("give job ids or filters (--status, --queue, --name), not both")
    if not ids and not has_filter:
        raise click.UsageError("give job ids, or select jobs with --status, --queue or --name")
    if ids:
        return list(dict.fromkeys(queue.resolve_id(i) for i in ids))
    where = make_filter(
        status=list(statuses or default_statuses), queue=list(queues) or None, name=name
    )
    found: list[str] = []
    while True:
        page = queue.storage.list_jobs(where, limit=_PAGE, offset=len(found), order="oldest")
        found.extend(r.id for r in page)
        if len(page) < _PAGE:
            return found


def _bulk(
    obj: CliContext,
    ids: Sequence[str],
    statuses: Sequence[str],
    queues: Sequence[str],
    name: str | None,
    default_statuses: Sequence[str],
    change: Callable[[JobQueue, list[str]], list[str]],
    verb: str,
    target: str,
) -> None:
    """Apply `change` to the selected jobs and say how many changed (`target`: the state a
    changed job ends in). Named jobs left unchanged are listed on stderr, each with its
    reason; when none of them changed that is a user error (exit 1). A filter that matches
    nothing changes nothing, and is no error."""
    from gigq_core.errors import UserError

    with obj.open_queue() as queue:
        selected = _select(queue, ids, statuses, queues, name, default_statuses)
        before = {i: r.status.value for i, r in queue.storage.get_many(selected).items()}
        returned = set(change(queue, selected)) if selected else set()
        after = queue.storage.get_many(selected)
        # A selected job can also change as a dependent of another one (a cascade or a
        # revival in the same transaction); it counts as changed too.
        changed = [
            i
            for i in selected
            if i in returned
            or (i in after and after[i].status.value == target and before.get(i) != target)
        ]
        running = [i for i in changed if i in after and after[i].status.value == "running"]
        changed_set = set(changed)
        unchanged = [i for i in selected if i not in changed_set]
        reasons = [_unchanged_reason(queue, i, after.get(i), target) for i in unchanged]
    if obj.json:
        fmt.echo_json({"count": len(changed), "changed": changed, "unchanged": unchanged})
    else:
        message = f"{verb.capitalize()} {fmt.plural(len(changed) - len(running), 'job')}."
        if running:
            message += f" Asked {fmt.plural(len(running), 'running job')} to stop."
        if changed or not ids:
            click.echo(message)
    if not (ids and reasons):
        return
    if not changed:
        raise UserError(f"not {verb}: " + "; ".join(reasons))
    fmt.echo(f"Not {verb}: " + "; ".join(reasons) + ".", err=True)


def _unchanged_reason(queue: JobQueue, job_id: str, record: JobRecord | None, target: str) -> str:
    """Why a named job did not change: its state, or (for a requeue) the active job that
    holds its unique key, so the user knows which job to wait for or cancel."""
    from gigq_core.records import BROKEN_STATUSES, JobFilter, JobStatus, UnreadableJob

    if record is None:
        return f"{job_id} no longer exists"
    if (
        target == "pending"
        and not isinstance(record, UnreadableJob)
        and record.status in BROKEN_STATUSES
        and record.unique_key is not None
    ):
        active = (JobStatus.PENDING, JobStatus.RESERVED, JobStatus.RUNNING)
        holders = queue.storage.list_jobs(
            JobFilter(statuses=active, unique_key=record.unique_key), limit=1, order="oldest"
        )
        if holders and holders[0].id != job_id:
            return f"the unique key of {job_id} is held by job {holders[0].id}"
    return f"{job_id} is {_state(record)}"


_filter_options = (
    click.option("--status", "statuses", multiple=True, help="Select jobs in this state."),
    click.option("--queue", "queues", multiple=True, help="Select jobs of this queue."),
    click.option("--name", help="Select jobs with this exact name."),
)


def _with_filters(function: Any) -> Any:
    for option in reversed(_filter_options):
        function = option(function)
    return function


@click.command(short_help="Cancel jobs, by id or by filter.")
@click.argument("ids", nargs=-1, metavar="[ID]...")
@_with_filters
@pass_cli
def cancel(
    obj: CliContext,
    ids: tuple[str, ...],
    statuses: tuple[str, ...],
    queues: tuple[str, ...],
    name: str | None,
) -> None:
    """Cancel jobs by id, or every pending, reserved and running job a filter picks.

    An ID may be any unique prefix of a job id. A pending job is cancelled, with the
    jobs that depend on it; a running job is asked to stop. Finished jobs are left alone.

    Named jobs that could not be cancelled are listed on stderr with the reason: exit 1
    when none could, exit 0 when some were. A filter that matches nothing exits 0.
    """
    _bulk(
        obj, ids, statuses, queues, name, ("pending", "reserved", "running"),
        lambda queue, selected: queue.cancel_many(selected), "cancelled", "cancelled",
    )  # fmt: skip


@click.command()
@click.argument("ids", nargs=-1, metavar="[ID]...")
@_with_filters
@pass_cli
def requeue(
    obj: CliContext,
    ids: tuple[str, ...],
    statuses: tuple[str, ...],
    queues: tuple[str, ...],
    name: str | None,
) -> None:
    """Requeue failed, timed-out or cancelled jobs, by id or by filter.

    They go back to pending. Attempts and results start over; dependents the job's end
    cancelled are revived. A job whose unique key another active job holds stays as it is.

    Named jobs that could not be requeued are listed on stderr with the reason: exit 1
    when none could, exit 0 when some were. A filter that matches nothing exits 0.
    """
    _bulk(
        obj, ids, statuses, queues, name, ("failed", "timeout", "cancelled"),
        lambda queue, selected: queue.requeue_many(selected), "requeued", "pending",
    )  # fmt: skip


@click.command()
@click.option(
    "--before",
    type=FiniteFloat(min=0, max=100 * 365),
    metavar="DAYS",
    help="Only jobs last updated more than DAYS days ago.",
)
@click.option(
    "--status",
    "statuses",
    multiple=True,
    help="Remove jobs in this finished state (repeatable; default: completed).",
)
@pass_cli
def clear(obj: CliContext, before: float | None, statuses: tuple[str, ...]) -> None:
    """Remove finished jobs (completed by default) and their executions.

    A job that an unfinished job depends on is kept.
    """
    from datetime import timedelta

    chosen = check_statuses(statuses) or ["completed"]
    with obj.open_queue() as queue:
        cutoff = None if before is None else queue.clock.now() - timedelta(days=before)
        deleted = queue.clear(chosen, cutoff)
    if obj.json:
        fmt.echo_json({"deleted": deleted})
    else:
        click.echo(f"Cleared {fmt.plural(deleted, 'job')} ({', '.join(chosen)}).")


@click.command()
@click.argument("ids", nargs=-1, metavar="[ID]...")
@click.option("--workflow", "workflow_ref", metavar="NAME|ID", help="Wait for a workflow's jobs.")
@click.option(
    "--timeout",
    type=FiniteFloat(min=0, max=1e9),
    default=None,
    help="Give up after this many seconds (exit 124).",
)
@click.pass_context
def wait(
    ctx: click.Context, ids: tuple[str, ...], workflow_ref: str | None, timeout: float | None
) -> None:
    """Wait until the jobs (or a workflow's jobs) finish.

    Exit 0 if all completed, 3 if some ended otherwise (failed, cancelled, timeout),
    124 if --timeout passed first.
    """
    import time

    from gigq_core.records import JobStatus

    obj = ctx.find_object(CliContext)
    assert obj is not None  # the root group always sets it
    with obj.open_queue() as queue:
        if not ids and workflow_ref is None:
            raise click.UsageError("name job ids, or a workflow with --workflow")
        wanted = list(dict.fromkeys(queue.resolve_id(i) for i in ids))
        if workflow_ref is not None:
            flow = queue.resolve_workflow(workflow_ref)
            wanted += [j.id for j in queue.workflow_jobs(flow.id) if j.id not in wanted]
        deadline = None if timeout is None else time.monotonic() + timeout
        show_bar = not obj.json and sys.stderr.isatty()
        bar = (
            click.progressbar(
                length=len(wanted),
                label="Waiting",
                file=sys.stderr,
                show_pos=True,
                show_percent=False,
            )
            if show_bar
            else None
        )
        done = 0
        try:
            while True:
                left = None if deadline is None else deadline - time.monotonic()
                step = 0.5 if left is None else max(0.0, min(0.5, left))
                statuses = queue.wait(wanted, timeout=step)
                finished = sum(JobStatus(s).is_final for s in statuses.values())
                if bar is not None:
                    bar.update(finished - done)
                done = finished
                if finished == len(wanted):
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    break
        finally:
            if bar is not None:
                bar.render_finish()
        names = {i: r.name for i, r in queue.storage.get_many(wanted).items()}
    timed_out = done < len(wanted)
    if obj.json:
        fmt.echo_json(statuses)
    else:
        rows = [(i, names.get(i, ""), s) for i, s in statuses.items()]
        click.echo(fmt.table(rows, ("id", "name", "status")))
        counts: dict[str, int] = {}
        for value in statuses.values():
            counts[value] = counts.get(value, 0) + 1
        summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        if timed_out:
            click.echo(f"Timed out after {timeout:g} s: {summary}.", err=True)
        else:
            click.echo(f"All finished: {summary}.")
    if timed_out:
        ctx.exit(WAIT_TIMEOUT)
    if any(s != JobStatus.COMPLETED.value for s in statuses.values()):
        ctx.exit(WAIT_FAILED)


COMMANDS = (list_jobs, status, cancel, requeue, clear, wait)

__all__ = ["COMMANDS", "cancel", "clear", "list_jobs", "requeue", "status", "wait"]
