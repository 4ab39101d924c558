"""A submitter process: `python -m tests.process._submitter DB LEDGER COUNT IDS SEED`.

Submits COUNT `chaos_jobs.work` jobs one at a time and appends each acknowledged id to the
file IDS (after `submit` returned, so a listed id must exist in the database)."""

from __future__ import annotations

import os
import random
import sys

from gigq_core import Job, JobQueue, make_plugin_manager


def main(db: str, ledger: str, count: int, ids: str, seed: int) -> None:
    """Submit the jobs, recording each acknowledged id."""
    rng = random.Random(seed)
    fd = os.open(ids, os.O_APPEND | os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        with JobQueue(db, plugin_manager=make_plugin_manager(load_entrypoints=False)) as queue:
            for _ in range(count):
                job = Job(
                    "work",
                    "tests.process.chaos_jobs:work",
                    params={"ledger": ledger, "ms": rng.choice((0, 1, 2))},
                    max_attempts=10,
                )
                job_id = queue.submit(job)
                os.write(fd, f"{job_id}\n".encode())
    finally:
        os.close(fd)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5]))
