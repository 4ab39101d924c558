"""The `startup` workload: what a fresh process pays before GigQ does anything.

- `import gigq`: timed inside a fresh interpreter, around the import statement only;
- `gigq --help`: the whole command, from spawning the process to its exit (the `gigq`
  script beside this Python, else `python -m gigq_cli`).

Each is run `runs` times per repeat (the first one too, so a cold page cache shows in the
max) and the median is kept.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import BenchmarkError, subprocess_env

#: Runs of each command per repeat.
RUNS = 5

_IMPORT = "import time; t = time.perf_counter(); import gigq; print(time.perf_counter() - t)"


def _gigq_command() -> list[str]:
    script = Path(sys.executable).with_name("gigq")
    return [str(script)] if script.exists() else [sys.executable, "-m", "gigq_cli"]


def _run(command: list[str], workdir: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        command,
        cwd=workdir,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise BenchmarkError(f"{' '.join(command)} failed: {done.stderr.strip()[-500:]}")
    return done


def measure(workdir: Path, runs: int = RUNS) -> dict[str, float]:
    """Median milliseconds of `import gigq` and of `gigq --help`, over `runs` each."""
    imports = [
        float(_run([sys.executable, "-c", _IMPORT], workdir).stdout) * 1000 for _ in range(runs)
    ]
    helps = []
    for _ in range(runs):
        start = time.perf_counter()
        _run([*_gigq_command(), "--help"], workdir)
        helps.append((time.perf_counter() - start) * 1000)
    return {"import_ms": statistics.median(imports), "help_ms": statistics.median(helps)}
