"""A one-shot queue client for the crash-point tests:
`python -m _pg_client ACTION URL JOB_ID LEDGER` (from this directory).

ACTION is `submit` (a `pg_jobs.work` job with that id) or `cancel`. Run with
GIGQ_TEST_CRASH set, it dies (exit 137) at the named commit; otherwise it exits 0.
"""

from __future__ import annotations

import sys

from _pg import make_pm
from gigq_core import Job, JobQueue


def main(action: str, url: str, job_id: str, ledger: str) -> None:
    """Do the one action."""
    with JobQueue(url, plugin_manager=make_pm()) as queue:
        if action == "submit":
            job = Job("work", "pg_jobs:work", params={"ledger": ledger})
            job.id = job_id
            queue.submit(job)
        elif action == "cancel":
            assert queue.cancel(job_id)
        else:
            raise SystemExit(f"unknown action {action!r}")


if __name__ == "__main__":
    main(*sys.argv[1:])
