"""The GitHub Archive pipeline of examples/github_archive.py.

- `sample`: deterministic sample hour files in the GH Archive event format (no internet needed);
- `tasks`: the job functions (download_hour, aggregate_hour, merge, report), importable by
  any worker as `gharchive.tasks:...`;
- `pipeline`: hour ranges, and the workflow of one date range with its unique keys.
"""

from __future__ import annotations
