"""GigQ's side-by-side benchmark runner: `python -m benchmarks` (see benchmarks/README.md).

Every workload runs on GigQ and on its peers (huey's `SqliteHuey`, the baseline; litequeue;
raw sqlite3 loops) in the same run, on fresh databases in temporary directories on local
disk, and every job run is checked for exactly-once execution against a ledger file.
"""

from __future__ import annotations
