"""Issue 16, no traceback ever: a very deep workflow, rows written by hand into a GigQ
database (an invalid status, params that are not JSON, an impossible timestamp), and
plugins that break; the CLI prints what is wrong and goes on with the rest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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


# -- broken plugins ------------------------------------------------------------------------


def install_plugin(folder: Path, name: str, source: str) -> None:
    """A module `gigq_test_<name>` with entry point `<name>` of group gigq, importable from
    `folder` (as an installed distribution would be)."""
    module = f"gigq_test_{name}"
    (folder / f"{module}.py").write_text(source, encoding="utf-8")
    info = folder / f"{module}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: gigq-test-{name}\nVersion: 1.0\n", encoding="utf-8"
    )
    (info / "entry_points.txt").write_text(f"[gigq]\n{name} = {module}\n", encoding="utf-8")


def test_broken_plugins_get_one_line_each_and_the_cli_works(tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    install_plugin(plugins, "interrupting", "raise KeyboardInterrupt\n")
    install_plugin(plugins, "exiting", "import sys\nsys.exit(4)\n")
    install_plugin(
        plugins,
        "commands",
        "from gigq import hookimpl\n\n"
        "@hookimpl\n"
        "def gigq_register_commands(cli):\n"
        "    raise RuntimeError('no commands today')\n",
    )
    root = Path(__file__).resolve().parents[2]  # tests.jobs is imported from there
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugins), str(root)])}
    env.pop("GIGQ_DISABLE_PLUGINS", None)
    db = str(tmp_path / "jobs.db")

    def gigq(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gigq_cli", "--db", db, *args],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )

    submitted = gigq("submit", "tests.jobs:add", "-p", "a=1", "-p", "b=2")
    listed = gigq("list")

    for result in (submitted, listed):
        assert result.returncode == 0, result.stderr
        lines = sorted(result.stderr.splitlines())
        assert len(lines) == 3, lines
        assert "plugin 'commands' failed to add its commands: RuntimeError(" in lines[0]
        exiting = "plugin 'exiting' (gigq-test-exiting 1.0) failed to load: SystemExit(4)"
        assert exiting in lines[1]
        assert "plugin 'interrupting' (gigq-test-interrupting 1.0) failed to load:" in lines[2]
        assert "KeyboardInterrupt()" in lines[2]
    assert submitted.stdout.startswith("Job submitted: ")
    assert " add " in listed.stdout
