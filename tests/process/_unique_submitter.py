"""A racing submitter process of the unique-key tests:
`python -m tests.process._unique_submitter DB KEY SCOPE THREADS READY GO`.

Opens one queue per thread, creates the file READY once every thread is ready, waits for
the file GO to appear, then every thread submits one `tests.jobs:noop` job with unique key
KEY and scope SCOPE at once. Prints a JSON list of [id, start, end] per thread (the Unix
times around its submit); exits 1 if any submit raised (the errors go to stderr).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import traceback

from gigq_core import Job, JobQueue, make_plugin_manager


def main(db: str, key: str, scope: str, threads: int, ready: str, go: str) -> int:
    """Race `threads` submits after GO appears; print the ids."""
    pm = make_plugin_manager(load_entrypoints=False)
    queues = [JobQueue(db, plugin_manager=pm) for _ in range(threads)]
    barrier = threading.Barrier(threads + 1)
    ids: list[tuple[str, float, float] | None] = [None] * threads
    errors: list[str] = []

    def submit(index: int) -> None:
        job = Job("unique", "tests.jobs:noop", unique_key=key, unique_scope=scope)
        barrier.wait()
        try:
            start = time.time()
            job_id = queues[index].submit(job)
            ids[index] = (job_id, start, time.time())
        except Exception:  # reported to the test through stderr and the exit code
            errors.append(traceback.format_exc())

    workers = [threading.Thread(target=submit, args=(n,)) for n in range(threads)]
    for thread in workers:
        thread.start()
    os.close(os.open(ready, os.O_CREAT | os.O_WRONLY, 0o600))
    deadline = time.monotonic() + 60
    while not os.path.exists(go):
        if time.monotonic() > deadline:
            print("GO never appeared", file=sys.stderr)
            os._exit(2)
        time.sleep(0.001)
    barrier.wait()
    for thread in workers:
        thread.join()
    for queue in queues:
        queue.close()
    print(json.dumps(ids))
    for error in errors:
        print(error, file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    args = sys.argv[1:]
    sys.exit(main(args[0], args[1], args[2], int(args[3]), args[4], args[5]))
