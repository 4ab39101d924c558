"""`python -m benchmarks.huey_consumer --db PATH`: huey's consumer, with its defaults, until
SIGTERM or SIGINT (the `latency` workload's idle huey worker).

The consumer is `huey.create_consumer()` with no options, as `huey_consumer` runs it: one
worker thread, polling from 0.1 s backing off by 1.15x up to 10 s when the queue is empty,
and its periodic scheduler. It prints `ready` once its threads are started.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from benchmarks.huey_bench import make_huey


def main(argv: list[str] | None = None) -> int:
    """Run the consumer until a signal stops it."""
    from huey.consumer import ConsumerStopped

    parser = argparse.ArgumentParser(prog="python -m benchmarks.huey_consumer")
    parser.add_argument("--db", type=Path, required=True)
    args = parser.parse_args(argv)
    huey, _ = make_huey(args.db, fsync=True)
    consumer = huey.create_consumer()
    consumer.start()
    print("ready", flush=True)
    health_check = time.monotonic()
    try:
        while True:
            health_check = consumer.loop(health_check)
    except ConsumerStopped:
        pass
    finally:
        huey.storage.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
