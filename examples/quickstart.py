"""Quick start: submit jobs and a small workflow to a SQLite queue, run a worker, show results.

Run it with `python examples/quickstart.py [DB]` (default: quickstart.db in a temp folder).
"""

from __future__ import annotations

import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import tasks

from gigq import Job, JobQueue, Worker, Workflow

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "A job queue in one SQLite file: no server, no broker, no fuss.",
    "The worker claims a job, runs it, and records the result in the same file.",
]


def main() -> None:
    db = sys.argv[1] if len(sys.argv) > 1 else str(Path(tempfile.mkdtemp()) / "quickstart.db")
    queue = JobQueue(db)

    single = queue.submit(Job("checksum", tasks.checksum, {"data": "gigq", "rounds": 5000}))
    flow = Workflow("word-count")
    parts = [
        flow.add_job(Job(f"count-{i}", tasks.count_words, {"text": t})) for i, t in enumerate(TEXTS)
    ]
    merge = flow.add_job(Job("merge", tasks.merge_counts), depends_on=parts)
    flow.submit_all(queue)

    worker = Worker(db, polling_interval=0.2)
    ids = [single, *(job.id for job in parts), merge.id]

    def stop_when_done() -> None:
        queue.wait(ids, timeout=60)
        worker.stop()

    threading.Thread(target=stop_when_done, daemon=True).start()
    worker.start()

    print(f"queue: {db}")
    print(
        f"checksum job {single}: {queue.get_status(single)['status']}, "
        f"result {queue.get_result(single)}"
    )
    result = queue.get_result(merge.id)
    print(
        f"workflow 'word-count': merge {queue.get_status(merge.id)['status']}, "
        f"{result['distinct']} distinct words, top: {result['top']}"
    )
    print(f"stats: {queue.stats()}")
    queue.close()


if __name__ == "__main__":
    main()
