"""A one-shot queue client for the crash-point tests:
`python -m tests.reliability._client ACTION DB JOB_ID [LEDGER]`.

ACTION is `submit` (a `chaos_jobs.work` job with that id), `cancel`, `requeue` or `kv` (sets
the key-value entry crash/key to "value"; JOB_ID is not used). Run with
GIGQ_TEST_CRASH set, it dies (exit 137) at the named commit; otherwise it exits 0.
"""

from __future__ import annotations

import sys

from gigq_core import JobQueue, make_plugin_manager
from tests.process._harness import chaos_job


def main(action: str, db: str, job_id: str, ledger: str = "") -> None:
    """Do the one action."""
    with JobQueue(db, plugin_manager=make_plugin_manager(load_entrypoints=False)) as queue:
        if action == "submit":
            job = chaos_job("work", ledger=ledger)
            job.id = job_id
            queue.submit(job)
        elif action == "cancel":
            assert queue.cancel(job_id)
        elif action == "requeue":
            assert queue.requeue_job(job_id)
        elif action == "kv":
            queue.storage.kv_set("crash", "key", "value")
        else:
            raise SystemExit(f"unknown action {action!r}")


if __name__ == "__main__":
    main(*sys.argv[1:])
