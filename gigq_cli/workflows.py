"""`gigq workflow list|show|cancel`: workflows and their DAGs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import click

from gigq_cli import _format as fmt
from gigq_cli._types import Count
from gigq_cli.main import CliContext, pass_cli

if TYPE_CHECKING:
    from gigq_core.records import JobRecord

#: Marks a job's status in the text tree.
_MARK = {
    "pending": "…",
    "reserved": "▷",
    "running": "▶",
    "completed": "✓",
    "failed": "✗",
    "cancelled": "⊘",
    "timeout": "⌛",
}

#: Levels of a tree that are indented; deeper jobs stay at this indent and show their depth
#: (a long chain would otherwise print lines that grow by four characters per job).
_MAX_INDENT = 40


@click.group()
def workflow() -> None:
    """List, show and cancel workflows."""


@workflow.command("list")
@click.option(
    "--limit", type=Count(), default=50, show_default=True, help="Show at most this many."
)
@pass_cli
def list_workflows(obj: CliContext, limit: int) -> None:
    """Workflows, newest first, with their jobs per status."""
    with obj.open_queue() as queue:
        # One more than shown tells whether the limit left some out.
        flows = queue.workflows(min(limit + 1, 2**63 - 1))
    more = len(flows) > limit
    flows = flows[:limit]
    if obj.json:
        fmt.echo_json(
            [
                {"id": f.id, "name": f.name, "created_at": f.created_at, "counts": f.counts}
                for f in flows
            ]
        )
        return
    if not flows:
        click.echo("No workflows.")
        return
    rows = [
        (
            f.id,
            f.name,
            sum(f.counts.values()),
            ", ".join(f"{n} {s}" for s, n in sorted(f.counts.items())),
            fmt.human_time(f.created_at),
        )
        for f in flows
    ]
    click.echo(fmt.table(rows, ("id", "name", "jobs", "states", "created")))
    if more:
        shown = fmt.plural(limit, "workflow")
        click.echo(f"{shown} shown, and there are more; use --limit to see more.", err=True)


def tree_lines(jobs: Sequence[JobRecord]) -> list[str]:
    """The DAG as an indented text tree: roots first, each dependent under each parent
    (a job with several parents appears under each, marked after its first time)."""
    by_id = {j.id: j for j in jobs}
    children: dict[str, list[JobRecord]] = {j.id: [] for j in jobs}
    roots = []
    for job in jobs:
        parents = [d for d in job.dependencies if d in by_id]
        if not parents:
            roots.append(job)
        for parent in parents:
            children[parent].append(job)
    lines: list[str] = []
    shown: set[str] = set()

    def label(job: JobRecord) -> str:
        state = _state(job)
        text = f"{_MARK.get(state, '?')} {job.name} [{state}] {job.id[:8]}"
        outside = [d[:8] for d in job.dependencies if d not in by_id]
        if outside:
            text += f" (also waits for {', '.join(outside)})"
        error = _error(job)
        if error and state != "completed":
            text += f": {fmt.short_error(error, 50)}"
        return text

    # An explicit stack, not recursion: a chain of thousands of jobs is a valid workflow.
    # Each entry: (job, prefix, is last child, is a root, depth).
    stack: list[tuple[JobRecord, str, bool, bool, int]] = [
        (root, "", True, True, 0) for root in reversed(roots)
    ]
    while stack:
        job, prefix, last, top, depth = stack.pop()
        branch = "" if top else ("└── " if last else "├── ")
        deep = f" (depth {depth})" if depth > _MAX_INDENT else ""
        if job.id in shown:
            lines.append(f"{prefix}{branch}{job.name} {job.id[:8]} (see above){deep}")
            continue
        shown.add(job.id)
        lines.append(f"{prefix}{branch}{label(job)}{deep}")
        below = children[job.id]
        deeper = prefix
        if not top and depth < _MAX_INDENT:
            deeper = prefix + ("    " if last else "│   ")
        for index in reversed(range(len(below))):
            stack.append((below[index], deeper, index == len(below) - 1, False, depth + 1))
    return [fmt.clean(line) for line in lines]


def _state(job: JobRecord) -> str:
    """A job's status, or "unreadable" for the stand-in of a row that cannot be read."""
    from gigq_core.records import UnreadableJob

    return "unreadable" if isinstance(job, UnreadableJob) else job.status.value


def _error(job: JobRecord) -> str | None:
    """A job's error, or what is wrong with its row if it cannot be read."""
    from gigq_core.records import UnreadableJob

    return job.reason if isinstance(job, UnreadableJob) else job.error


def dot(name: str, jobs: Sequence[JobRecord]) -> str:
    """The DAG in Graphviz dot."""
    colors = {
        "completed": "palegreen",
        "failed": "salmon",
        "timeout": "orange",
        "cancelled": "lightgrey",
        "running": "lightblue",
        "reserved": "aliceblue",
        "pending": "white",
    }
    out = [
        f"digraph {_quote(fmt.clean(name))} {{",
        "  rankdir=LR;",
        "  node [shape=box, style=filled];",
    ]
    ids = {j.id for j in jobs}
    for job in jobs:
        label = f"{fmt.clean(job.name)}\\n{job.status.value}"
        color = colors.get(job.status.value, "white")
        out.append(f"  {_quote(fmt.clean(job.id))} [label={_quote(label)}, fillcolor={color}];")
    for job in jobs:
        for dep in job.dependencies:
            if dep in ids:
                out.append(f"  {_quote(fmt.clean(dep))} -> {_quote(fmt.clean(job.id))};")
    out.append("}")
    return "\n".join(out)


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\\\\n", "\\n") + '"'


def mermaid(jobs: Sequence[JobRecord]) -> str:
    """The DAG as a Mermaid flowchart."""
    node = {j.id: f"j{i}" for i, j in enumerate(jobs)}
    out = ["flowchart LR"]
    for job in jobs:
        text = fmt.clean(f"{job.name} ({job.status.value})").replace('"', "'")
        out.append(f'  {node[job.id]}["{text}"]:::{job.status.value}')
    for job in jobs:
        for dep in job.dependencies:
            if dep in node:
                out.append(f"  {node[dep]} --> {node[job.id]}")
    out += [
        "  classDef completed fill:#cfc;",
        "  classDef failed fill:#fcc;",
        "  classDef timeout fill:#fdb;",
        "  classDef cancelled fill:#ddd;",
        "  classDef running fill:#cdf;",
        "  classDef pending fill:#fff;",
    ]
    return "\n".join(out)


@workflow.command()
@click.argument("workflow_ref", metavar="NAME|ID")
@click.option(
    "--format",
    "output",
    type=click.Choice(["tree", "dot", "mermaid"]),
    default="tree",
    show_default=True,
    help="A text tree, or a picture's source (Graphviz dot, Mermaid).",
)
@pass_cli
def show(obj: CliContext, workflow_ref: str, output: str) -> None:
    """Show a workflow's jobs as a tree of their dependencies, with each job's status."""
    from gigq_core.views import iso

    with obj.open_queue() as queue:
        flow = queue.resolve_workflow(workflow_ref)
        jobs = queue.workflow_jobs(flow.id)
    if obj.json:
        fmt.echo_json(
            {
                "id": flow.id,
                "name": flow.name,
                "created_at": flow.created_at,
                "counts": flow.counts,
                "jobs": [
                    {
                        "id": j.id,
                        "name": j.name,
                        "status": _state(j),
                        "dependencies": list(j.dependencies),
                        "attempts": j.attempts,
                        "error": _error(j),
                        "completed_at": iso(j.completed_at),
                    }
                    for j in jobs
                ],
            }
        )
    elif output == "dot":
        click.echo(dot(flow.name, jobs))
    elif output == "mermaid":
        click.echo(mermaid(jobs))
    else:
        states = ", ".join(f"{n} {s}" for s, n in sorted(flow.counts.items()))
        fmt.echo(f"Workflow {flow.name} ({flow.id}): {fmt.plural(len(jobs), 'job')}, {states}")
        for line in tree_lines(jobs):
            click.echo(line)


@workflow.command()
@click.argument("workflow_ref", metavar="NAME|ID")
@pass_cli
def cancel(obj: CliContext, workflow_ref: str) -> None:
    """Cancel every unfinished job of a workflow (running ones are asked to stop)."""
    with obj.open_queue() as queue:
        flow = queue.resolve_workflow(workflow_ref)
        changed = queue.cancel_workflow(flow.id)
    if obj.json:
        fmt.echo_json({"workflow": flow.id, "cancelled": changed})
    else:
        fmt.echo(f"Cancelled {fmt.plural(len(changed), 'job')} of workflow {flow.name}.")


COMMANDS = (workflow,)

__all__ = ["COMMANDS", "dot", "mermaid", "tree_lines", "workflow"]
