"""`gigq workflow list|show|cancel` and `gigq wait --workflow`: a workflow is named by id,
id prefix or name; a name several workflows share is a user error listing their ids."""

from __future__ import annotations

import json
import re

import pluggy
import pytest

from gigq import JobQueue
from gigq_core import Job, Workflow

from .conftest import Run
from .helpers import assert_user_error, run_one

EDGE_DOT = re.compile(r'  "(?P<dep>[^"]+)" -> "(?P<job>[^"]+)";')
NODE_DOT = re.compile(r'  "(?P<id>[^"]+)" \[label="(?P<name>[^"\\]+)\\n(?P<status>\w+)", .*\];')
EDGE_MERMAID = re.compile(r"  (?P<dep>j\d+) --> (?P<job>j\d+)")
NODE_MERMAID = re.compile(
    r'  (?P<node>j\d+)\["(?P<name>[^"]+) \((?P<status>\w+)\)"\]:::(?P=status)'
)


def job(name: str, function: str = "tests.jobs:add") -> Job:
    """A job of tests/jobs.py that runs once."""
    params = {"a": 1, "b": 2} if function == "tests.jobs:add" else {}
    return Job(name, function, params=params, max_attempts=1)


def diamond(queue: JobQueue, name: str = "etl", fail_b: bool = False) -> Workflow:
    """A -> B, C -> D, submitted (B fails when it runs, if `fail_b`)."""
    flow = Workflow(name)
    a = flow.add_job(job("A"))
    b = flow.add_job(job("B", "tests.jobs:fail" if fail_b else "tests.jobs:add"), depends_on=a)
    c = flow.add_job(job("C"), depends_on=a)
    flow.add_job(job("D"), depends_on=[b, c])
    flow.submit_all(queue)
    return flow


def drain(db: str, pm: pluggy.PluginManager) -> None:
    """Run every ready job inline."""
    while run_one(db, pm):
        pass


def edges(flow: Workflow) -> set[tuple[str, str]]:
    """(dependency id, job id) of every dependency in the workflow."""
    return {(dep, j.id) for j in flow.jobs for dep in j.dependencies}


# -- list ------------------------------------------------------------------------------------


def test_list_shows_workflows_newest_first_with_counts(
    gigq: Run, queue: JobQueue, db: str, pm: pluggy.PluginManager
) -> None:
    assert gigq("workflow", "list").stdout == "No workflows.\n"
    assert json.loads(gigq("--json", "workflow", "list").stdout) == []
    done = diamond(queue, "first", fail_b=True)
    drain(db, pm)
    waiting = diamond(queue, "second")
    result = gigq("workflow", "list")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["id", "name", "jobs", "states", "created"]
    assert lines[2].split()[:5] == [waiting.id, "second", "4", "4", "pending"]
    assert lines[3].split()[:3] == [done.id, "first", "4"]
    assert "1 cancelled, 2 completed, 1 failed" in lines[3]
    assert "just now" in lines[2]

    flows = json.loads(gigq("--json", "workflow", "list").stdout)
    assert [(f["id"], f["name"], f["counts"]) for f in flows] == [
        (waiting.id, "second", {"pending": 4}),
        (done.id, "first", {"cancelled": 1, "completed": 2, "failed": 1}),
    ]
    assert all(f["created_at"].endswith("+00:00") for f in flows)
    limited = gigq("--json", "workflow", "list", "--limit", "1")
    assert [f["id"] for f in json.loads(limited.stdout)] == [waiting.id]
    assert gigq("workflow", "list", "--limit", "0").exit_code == 2


def test_list_does_not_create_a_database(gigq: Run, db: str) -> None:
    assert_user_error(gigq("workflow", "list"), 1)


# -- show ------------------------------------------------------------------------------------


def test_show_prints_a_tree_with_statuses_and_the_cancel_reason(
    gigq: Run, queue: JobQueue, db: str, pm: pluggy.PluginManager
) -> None:
    flow = diamond(queue, fail_b=True)
    drain(db, pm)
    a, b, c, d = (j.id[:8] for j in flow.jobs)
    result = gigq("workflow", "show", "etl")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"Workflow etl ({flow.id}): 4 jobs, 1 cancelled, 2 completed, 1 failed"
    assert lines[1] == f"✓ A [completed] {a}"
    assert lines[2] == f"├── ✗ B [failed] {b}: ValueError: boom"
    assert lines[3].startswith(f"│   └── ⊘ D [cancelled] {d}: dependency 'B' ({b}")
    assert lines[4] == f"└── ✓ C [completed] {c}"
    assert lines[5] == f"    └── D {d} (see above)"
    assert len(lines) == 6

    info = json.loads(gigq("--json", "workflow", "show", flow.id).stdout)
    assert (info["id"], info["name"]) == (flow.id, "etl")
    by_name = {j["name"]: j for j in info["jobs"]}
    assert [j["name"] for j in info["jobs"]] == ["A", "B", "C", "D"]
    assert {n: j["status"] for n, j in by_name.items()} == {
        "A": "completed",
        "B": "failed",
        "C": "completed",
        "D": "cancelled",
    }
    assert by_name["D"]["dependencies"] == [flow.jobs[1].id, flow.jobs[2].id]
    assert by_name["D"]["error"] == f"dependency 'B' ({flow.jobs[1].id}) ended failed"


def test_show_by_id_and_id_prefix(gigq: Run, queue: JobQueue) -> None:
    flow = diamond(queue)
    diamond(queue, "other")
    for ref in (flow.id, flow.id[:8]):
        result = gigq("workflow", "show", ref)
        assert result.exit_code == 0, result.stderr
        assert result.stdout.startswith(f"Workflow etl ({flow.id}): 4 jobs, 4 pending\n")


def test_show_dot_is_a_digraph_with_an_edge_per_dependency(
    gigq: Run, queue: JobQueue, db: str, pm: pluggy.PluginManager
) -> None:
    flow = diamond(queue, 'my "etl"', fail_b=True)
    drain(db, pm)
    result = gigq("workflow", "show", flow.id, "--format", "dot")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == 'digraph "my \\"etl\\"" {'
    assert lines[-1] == "}"
    body = lines[1:-1]
    assert all(line.startswith("  ") and line.endswith(";") for line in body), body
    assert result.stdout.count("{") == result.stdout.count("}") == 1
    nodes = {m["id"]: (m["name"], m["status"]) for m in map(NODE_DOT.fullmatch, body) if m}
    assert nodes == {
        flow.jobs[0].id: ("A", "completed"),
        flow.jobs[1].id: ("B", "failed"),
        flow.jobs[2].id: ("C", "completed"),
        flow.jobs[3].id: ("D", "cancelled"),
    }
    found = [(m["dep"], m["job"]) for m in map(EDGE_DOT.fullmatch, body) if m]
    assert len(found) == 4 and set(found) == edges(flow)


def test_show_mermaid_is_a_flowchart_with_an_edge_per_dependency(
    gigq: Run, queue: JobQueue
) -> None:
    flow = diamond(queue)
    result = gigq("workflow", "show", "etl", "--format", "mermaid")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "flowchart LR"
    nodes = {m["node"]: m["name"] for m in map(NODE_MERMAID.fullmatch, lines) if m}
    assert sorted(nodes.values()) == ["A", "B", "C", "D"]
    ids = {j.name: j.id for j in flow.jobs}
    found = [
        (ids[nodes[m["dep"]]], ids[nodes[m["job"]]])
        for m in map(EDGE_MERMAID.fullmatch, lines)
        if m
    ]
    assert len(found) == 4 and set(found) == edges(flow)
    classes = [line for line in lines if line.startswith("  classDef ")]
    assert len(classes) == 6
    assert len(lines) == 1 + 4 + 4 + 6, "nothing but nodes, edges and classes"


def test_show_unknown_workflow_is_a_user_error(gigq: Run, queue: JobQueue) -> None:
    diamond(queue)
    assert_user_error(gigq("workflow", "show", "nope"), 1, "no workflow with name or id 'nope'")
    assert_user_error(gigq("workflow", "cancel", "nope"), 1, "no workflow")
    assert_user_error(gigq("wait", "--workflow", "nope"), 1, "no workflow")


@pytest.mark.parametrize(
    "command",
    [("workflow", "show"), ("workflow", "cancel"), ("wait", "--workflow")],
    ids=["show", "cancel", "wait"],
)
def test_a_name_several_workflows_share_is_a_user_error_listing_their_ids(
    gigq: Run, queue: JobQueue, command: tuple[str, ...]
) -> None:
    first, second = diamond(queue), diamond(queue)
    diamond(queue, "other")
    result = gigq(*command, "etl")
    assert_user_error(result, 1, "2 workflows are named 'etl'")
    assert first.id in result.stderr and second.id in result.stderr
    assert queue.stats()["pending"] == 12, "nothing was cancelled"


# -- cancel ----------------------------------------------------------------------------------


def test_cancel_counts_every_job_it_cancelled(gigq: Run, queue: JobQueue) -> None:
    flow = diamond(queue)
    other = diamond(queue, "other")
    result = gigq("workflow", "cancel", "etl")
    assert result.exit_code == 0, result.stderr
    assert queue.resolve_workflow(flow.id).counts == {"cancelled": 4}
    assert queue.resolve_workflow(other.id).counts == {"pending": 4}, "only that workflow"
    assert result.stdout == "Cancelled 4 jobs of workflow etl.\n"


def test_cancel_json_lists_the_cancelled_ids(gigq: Run, queue: JobQueue) -> None:
    flow = diamond(queue)
    result = gigq("--json", "workflow", "cancel", flow.id[:8])
    assert result.exit_code == 0, result.stderr
    reply = json.loads(result.stdout)
    assert reply["workflow"] == flow.id
    assert sorted(reply["cancelled"]) == sorted(j.id for j in flow.jobs)


def test_cancel_leaves_finished_jobs_and_asks_running_ones_to_stop(
    gigq: Run, queue: JobQueue, db: str, pm: pluggy.PluginManager
) -> None:
    flow = Workflow("etl")
    done = flow.add_job(job("done"))
    busy = flow.add_job(job("busy"))
    flow.submit_all(queue)
    assert run_one(db, pm)  # runs `done`
    [claimed] = queue.storage.claim("w1", 1, queue.clock.now(), 30)
    assert claimed.id == busy.id
    result = gigq("workflow", "cancel", "etl")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "Cancelled 1 job of workflow etl.\n"
    assert queue.get_status(done.id)["status"] == "completed"
    assert queue.get_status(busy.id)["status"] == "running"
    assert queue.get_status(busy.id)["cancel_requested"] is True


# -- wait --workflow -------------------------------------------------------------------------


def test_wait_workflow_exits_0_when_every_job_completed(
    gigq: Run, queue: JobQueue, db: str, pm: pluggy.PluginManager
) -> None:
    flow = diamond(queue)
    drain(db, pm)
    result = gigq("wait", "--workflow", "etl")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.endswith("All finished: 4 completed.\n")
    statuses = json.loads(gigq("--json", "wait", "--workflow", flow.id[:8]).stdout)
    assert statuses == dict.fromkeys((j.id for j in flow.jobs), "completed")


def test_wait_workflow_exits_3_when_a_job_failed(
    gigq: Run, queue: JobQueue, db: str, pm: pluggy.PluginManager
) -> None:
    flow = diamond(queue, fail_b=True)
    drain(db, pm)
    result = gigq("wait", "--workflow", flow.id)
    assert result.exit_code == 3
    assert "All finished: 1 cancelled, 2 completed, 1 failed." in result.stdout


def test_wait_workflow_exits_124_when_its_timeout_passes(
    gigq: Run, queue: JobQueue, db: str, pm: pluggy.PluginManager
) -> None:
    flow = diamond(queue)
    assert run_one(db, pm)  # A completes; B, C and D still wait
    result = gigq("wait", "--workflow", "etl", "--timeout", "0.3")
    assert result.exit_code == 124
    assert "Timed out after 0.3 s: 1 completed, 3 pending." in result.stderr
    assert "Traceback" not in result.stderr
    # With job ids as well, every one is waited for once.
    both = gigq("--json", "wait", flow.jobs[0].id, "--workflow", "etl", "--timeout", "0")
    assert both.exit_code == 124
    assert sorted(json.loads(both.stdout)) == sorted(j.id for j in flow.jobs)


def test_wait_without_ids_or_workflow_is_a_usage_error(gigq: Run, queue: JobQueue) -> None:
    result = gigq("wait")
    assert result.exit_code == 2
    assert "name job ids, or a workflow with --workflow" in result.stderr
    assert "Traceback" not in result.stderr
