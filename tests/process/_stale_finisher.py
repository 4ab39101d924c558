"""A stale attempt in a process of its own: `python -m tests.process._stale_finisher DB GO`.

Claims the one ready job as worker "zombie" with a short lease, prints its id and token,
waits until the file GO exists (by then the test has let the lease expire and another
worker has rescued and completed the job), then reports the stale attempt as completed and
prints what the storage answered: `fenced` when the outcome changed nothing."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from gigq_core import JobQueue, make_plugin_manager
from gigq_core.records import Outcome


def main(db: str, go: str) -> None:
    """Claim, wait for GO, then report the stale attempt."""
    with JobQueue(db, plugin_manager=make_plugin_manager(load_entrypoints=False)) as queue:
        [record] = queue.storage.claim("zombie", 1, queue.clock.now(), 0.5)
        print(record.id, record.token, flush=True)
        while not Path(go).exists():
            time.sleep(0.02)
        [transition] = queue.storage.finish(
            [
                Outcome(
                    job_id=record.id,
                    token=record.token,
                    status="completed",
                    result='{"stale": true}',
                )
            ],
            queue.clock.now(),
        )
        print("fenced" if transition is None else f"applied {transition.job.status}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
