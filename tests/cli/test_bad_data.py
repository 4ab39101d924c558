"""Issue 16, no traceback ever: a very deep workflow, rows written by hand into a GigQ
database (an invalid status, params that are not JSON, an impossible timestamp), and
plugins that break; the CLI prints what is wrong and goes on with the rest."""

from __future__ import annotations

import json

import pluggy

from gigq_core import Job, JobQueue, Workflow

from .conftest import Run


def chain(queue: JobQueue, length: int, name: str = "chain") -> Workflow:
    """A workflow of `length` jobs, each depending on the one before."""
    flow = Workflow(name)
    previous = None
    for index in range(length):
        previous = flow.add_job(Job(f"j{index}", "tests.jobs:add"), depends_on=previous)
    flow.submit_all(queue)
    return flow


# -- workflow show -------------------------------------------------------------------------


def test_workflow_show_prints_a_chain_of_5000_jobs(gigq: Run, queue: JobQueue) -> None:
    flow = chain(queue, 5000)

    result = gigq("workflow", "show", "chain")

    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1 + 5000
    assert lines[1] == f"… j0 [pending] {flow.jobs[0].id[:8]}"
    assert lines[2] == f"└── … j1 [pending] {flow.jobs[1].id[:8]}"
    assert lines[3] == f"    └── … j2 [pending] {flow.jobs[2].id[:8]}"
    # Past 40 levels the indent stops growing (each line would grow by 4 characters), and
    # the depth is written instead.
    assert lines[-1].endswith(f"j4999 [pending] {flow.jobs[-1].id[:8]} (depth 4999)")
    assert max(len(line) for line in lines) < 250
    shown = json.loads(gigq("--json", "workflow", "show", "chain").stdout)
    assert len(shown["jobs"]) == 5000


def test_workflow_show_of_a_wide_and_deep_tree_keeps_the_recursive_order(
    gigq: Run, queue: JobQueue, pm: pluggy.PluginManager
) -> None:
    flow = Workflow("tree")
    root = flow.add_job(Job("root", "tests.jobs:add"))
    left = flow.add_job(Job("left", "tests.jobs:add"), depends_on=root)
    flow.add_job(Job("left.1", "tests.jobs:add"), depends_on=left)
    right = flow.add_job(Job("right", "tests.jobs:add"), depends_on=root)
    flow.add_job(Job("both", "tests.jobs:add"), depends_on=[left, right])
    flow.submit_all(queue)
    ids = {j.name: j.id[:8] for j in flow.jobs}

    lines = gigq("workflow", "show", "tree").stdout.splitlines()[1:]

    assert lines == [
        f"… root [pending] {ids['root']}",
        f"├── … left [pending] {ids['left']}",
        f"│   ├── … left.1 [pending] {ids['left.1']}",
        f"│   └── … both [pending] {ids['both']}",
        f"└── … right [pending] {ids['right']}",
        f"    └── both {ids['both']} (see above)",
    ]
