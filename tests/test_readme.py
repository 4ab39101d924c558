"""The README's Python snippets, and the original GigQ README's Quick Start and Workflow
snippets, run unchanged as scripts against a SQLite file."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Stops a blocking Worker.start() from a thread once nothing is pending or running, as a user
# would press Ctrl-C; the snippets themselves run unchanged.
HARNESS = textwrap.dedent(
    """
    import threading, time
    import gigq

    _start = gigq.Worker.start

    def _start_until_drained(self):
        def watch():
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                stats = self.queue.stats()
                if stats["pending"] == 0 and stats["running"] == 0:
                    break
                time.sleep(0.05)
            self.stop()
        threading.Thread(target=watch, daemon=True).start()
        _start(self)

    gigq.Worker.start = _start_until_drained
    """
)

MYAPP = textwrap.dedent(
    """
    def process_data(filename, threshold=0.5):
        return {"processed": True, "filename": filename, "threshold": threshold}

    def download_data(url):
        return {"downloaded": url}

    def analyze_data(processed_file):
        return {"analyzed": processed_file}
    """
)

ORIGINAL_QUICK_START = textwrap.dedent(
    """
    from gigq import Job, JobQueue, Worker

    # Define a job function
    def process_data(filename, threshold=0.5):
        # Process some data
        print(f"Processing {filename} with threshold {threshold}")
        return {"processed": True, "count": 42}

    # Define a job
    job = Job(
        name="process_data_job",
        function=process_data,
        params={"filename": "data.csv", "threshold": 0.7},
        max_attempts=3,
        timeout=300
    )

    # Create or connect to a job queue
    queue = JobQueue("jobs.db")
    job_id = queue.submit(job)

    print(f"Submitted job with ID: {job_id}")

    # Start a worker
    worker = Worker("jobs.db")
    worker.start()  # This blocks until the worker is stopped

    # Check job status
    status = queue.get_status(job_id)
    print(f"Job status: {status['status']}")
    """
)

ORIGINAL_WORKFLOW = textwrap.dedent(
    """
    from gigq import Workflow

    # Create a workflow
    workflow = Workflow("data_processing")

    # Add jobs with dependencies
    job1 = Job(name="download", function=download_data, params={"url": "https://example.com/data.csv"})
    job2 = Job(name="process", function=process_data, params={"filename": "data.csv"})
    job3 = Job(name="analyze", function=analyze_data, params={"processed_file": "processed.csv"})

    # Add jobs to workflow with dependencies
    workflow.add_job(job1)
    workflow.add_job(job2, depends_on=[job1])
    workflow.add_job(job3, depends_on=[job2])

    # Submit all jobs in the workflow
    job_ids = workflow.submit_all(queue)
    """
)

# The functions the original Workflow snippet leaves undefined, defined in the script itself.
WORKFLOW_FUNCTIONS = textwrap.dedent(
    """
    def download_data(url):
        return {"downloaded": url}

    def analyze_data(processed_file):
        return {"analyzed": processed_file}
    """
)


def run_script(tmp_path: Path, source: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "snippet.py"
    script.write_text(HARNESS + source)
    return subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_original_quick_start_runs_unchanged(tmp_path: Path) -> None:
    done = run_script(tmp_path, ORIGINAL_QUICK_START)
    assert done.returncode == 0, done.stderr
    assert "Submitted job with ID:" in done.stdout
    assert "Processing data.csv with threshold 0.7" in done.stdout
    assert "Job status: completed" in done.stdout


def test_original_workflow_runs_unchanged(tmp_path: Path) -> None:
    source = (
        ORIGINAL_QUICK_START.replace("# Start a worker", WORKFLOW_FUNCTIONS + ORIGINAL_WORKFLOW)
        + "\nfor i in job_ids:\n"
        + "    print(queue.get_status(i)['name'], queue.get_status(i)['status'])\n"
    )
    done = run_script(tmp_path, source)
    assert done.returncode == 0, done.stderr
    for name in ("download", "process", "analyze"):
        assert f"{name} completed" in done.stdout


def readme_snippets() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_readme_python_snippets_run(tmp_path: Path) -> None:
    snippets = readme_snippets()
    assert len(snippets) >= 3
    (tmp_path / "myapp").mkdir()
    (tmp_path / "myapp" / "__init__.py").write_text("")
    (tmp_path / "myapp" / "jobs.py").write_text(MYAPP)
    # The snippets build on each other, as a reader would type them into one file.
    source = "import sys; sys.path.insert(0, '.')\n" + "\n".join(snippets)
    source = source.replace("https://example.com", "http://127.0.0.1:9")
    done = run_script(tmp_path, source)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("script", ["quickstart.py", "github_archive.py"])
def test_examples_run(tmp_path: Path, script: str) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script), str(tmp_path / "ex.db")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "completed" in done.stdout
